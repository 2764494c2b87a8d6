/**
 * Constrained decoding: GBNF grammars and JSON schemas turned into per-step token masks
 * over a model's vocabulary. Pure TypeScript, no GPU: the engine uploads the masks.
 */
export { GrammarError, UnsupportedSchemaError } from "./errors.ts";
export { type ByteSet, type Grammar, type GrammarElement, parseGbnf } from "./gbnf.ts";
export { gbnfLiteral, type JsonSchema, type JsonSchemaGrammarOptions, jsonSchemaToGbnf } from "./json-schema.ts";
export { GrammarMatcher, TokenGrammar } from "./matcher.ts";
export { type GrammarVocabulary, grammarVocabulary, type TokenTrie, tokenTrie, type VocabularySource } from "./vocabulary.ts";

/** Any JSON object, as `response_format: {type: "json_object"}` asks (llama.cpp's grammar for `{"type": "object"}`). */
export const JSON_OBJECT_SCHEMA: { readonly type: "object" } = { type: "object" };
