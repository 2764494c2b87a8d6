/**
 * llama.cpp server's own endpoints, in its shapes (tools/server/server-context.cpp), so its
 * clients work here: `POST /tokenize`, `POST /detokenize` and `GET /props`. Request bodies
 * are checked field by field; a wrong one is a 400 naming it.
 */
import type { Engine } from "../engine/engine.ts";
import { DEFAULT_GENERATE_OPTIONS } from "../engine/options.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { badRequest } from "./errors.ts";

type Json = Record<string, unknown>;

/** One token of a `with_pieces` answer: the piece as text when it is valid UTF-8, else its bytes. */
export interface TokenWithPiece {
  readonly id: number;
  readonly piece: string | number[];
}

/** A `/tokenize` request once parsed: llama.cpp's defaults filled in. */
export interface TokenizeRequest {
  /** A text, or llama.cpp's mixed form: texts and token ids in order. */
  readonly content: string | readonly (string | number)[];
  /** Add BOS/EOS where the model does (llama.cpp's default: false). */
  readonly addSpecial: boolean;
  /** Recognize special-token text such as `<|im_start|>` (default true). */
  readonly parseSpecial: boolean;
  /** Answer `[{id, piece}]` instead of bare ids (default false). */
  readonly withPieces: boolean;
}

function bodyObject(body: unknown): Json {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw badRequest("body", "must be a JSON object", "invalid_type");
  }
  return body as Json;
}

function booleanField(body: Json, key: string, fallback: boolean): boolean {
  const v = body[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw badRequest(key, `must be a boolean, got ${JSON.stringify(v)}`, "invalid_type");
  return v;
}

/** Throws a 400 naming `param` unless `value` is a token id of this vocabulary. */
function checkTokenId(value: unknown, param: string, vocabSize: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= vocabSize) {
    throw badRequest(param, `${JSON.stringify(value)} is not a token id of this model (0 ≤ id < ${vocabSize})`);
  }
  return value;
}

function parseContent(body: Json, vocabSize: number): string | (string | number)[] {
  const content = body.content;
  if (content === undefined || content === null) {
    throw badRequest("content", "is required: the text to tokenize", "missing_required_parameter");
  }
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) {
    throw badRequest("content", "must be a string, or an array of strings and token ids", "invalid_type");
  }
  return content.map((part, i) => (typeof part === "string" ? part : checkTokenId(part, `content[${i}]`, vocabSize)));
}

/** Parses a `/tokenize` body; throws a 400 naming the first wrong field. */
export function parseTokenizeRequest(body: unknown, vocabSize: number): TokenizeRequest {
  const b = bodyObject(body);
  return {
    content: parseContent(b, vocabSize),
    addSpecial: booleanField(b, "add_special", false),
    parseSpecial: booleanField(b, "parse_special", true),
    withPieces: booleanField(b, "with_pieces", false),
  };
}

/** Parses a `/detokenize` body into token ids; throws a 400 naming `tokens` or `tokens[i]`. */
export function parseDetokenizeRequest(body: unknown, vocabSize: number): number[] {
  const tokens = bodyObject(body).tokens;
  if (tokens === undefined || tokens === null) {
    throw badRequest("tokens", "is required: the token ids to turn into text", "missing_required_parameter");
  }
  if (!Array.isArray(tokens)) throw badRequest("tokens", "must be an array of token ids", "invalid_type");
  return tokens.map((t, i) => checkTokenId(t, `tokens[${i}]`, vocabSize));
}

/**
 * The ids of a `/tokenize` request, as llama.cpp's `tokenize_mixed` gives them: texts are
 * tokenized in order, ids kept as they are, and BOS/EOS (with `add_special`) only where
 * the first part is a text.
 */
export function tokenizeIds(tokenizer: Tokenizer, request: TokenizeRequest): number[] {
  const parts = typeof request.content === "string" ? [request.content] : request.content;
  const ids: number[] = [];
  parts.forEach((part, i) => {
    if (typeof part === "number") ids.push(part);
    else {ids.push(
        ...tokenizer.encode(part, { addSpecial: request.addSpecial && i === 0, parseSpecial: request.parseSpecial }),
      );}
  });
  return ids;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A piece as llama.cpp's server writes it: a string when valid UTF-8, else its bytes as numbers. */
function pieceJson(bytes: Uint8Array): string | number[] {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return Array.from(bytes); // a byte of a character split over several tokens
  }
}

/** The `/tokenize` answer: `{tokens: [ids]}`, or `{tokens: [{id, piece}]}` with `with_pieces`. */
export function tokenizeJson(tokenizer: Tokenizer, request: TokenizeRequest): { tokens: number[] | TokenWithPiece[] } {
  const ids = tokenizeIds(tokenizer, request);
  if (!request.withPieces) return { tokens: ids };
  return { tokens: ids.map((id) => ({ id, piece: pieceJson(tokenizer.pieceBytes(id)) })) };
}

/**
 * The `/detokenize` answer. Like llama.cpp's `tokens_to_str`, the pieces (special tokens
 * as their text) are joined as bytes, with no leading-space or clean-up rules, so that
 * `/tokenize` then `/detokenize` gives back the text; bytes that are no valid UTF-8 at the
 * end become U+FFFD, as llama.cpp's JSON writer replaces them.
 */
export function detokenizeJson(tokenizer: Tokenizer, ids: readonly number[]): { content: string } {
  const pieces = ids.map((id) => tokenizer.pieceBytes(id));
  const joined = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of pieces) {
    joined.set(p, at);
    at += p.length;
  }
  return { content: new TextDecoder().decode(joined) };
}

/** What `/props` says about the server beyond what the engine knows. */
export interface PropsContext {
  /** The id clients name the model by (`model_alias`). */
  readonly modelId: string;
  /** Where the model was loaded from; a URL loses its credentials and query first. */
  readonly modelPath?: string;
}

/**
 * A model path fit to show any client: a URL without user, password, query or fragment
 * (a signed URL's query is a credential), a local path as given.
 */
export function publicModelPath(path: string): string {
  if (!/^https?:\/\//i.test(path)) return path;
  try {
    const url = new URL(path);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return "";
  }
}

/**
 * The default sampling settings, under llama.cpp's names. The seed is left out: without
 * one each request draws its own, which no fixed number would describe.
 */
function defaultParamsJson(): Json {
  const d = DEFAULT_GENERATE_OPTIONS;
  return {
    temperature: d.temperature,
    top_k: d.topK,
    top_p: d.topP,
    min_p: d.minP,
    repeat_last_n: d.penaltyWindow,
    repeat_penalty: d.repeatPenalty,
    presence_penalty: d.presencePenalty,
    frequency_penalty: d.frequencyPenalty,
    max_tokens: d.maxTokens,
    n_predict: d.maxTokens,
    ignore_eos: false,
    stream: false,
  };
}

/**
 * The `GET /props` answer: llama.cpp's fields that this server can fill truthfully
 * (the engine must be ready). `n_ctx` is the context each sequence has and `total_slots`
 * the sequences that run at once, both as the engine chose them.
 */
export function propsJson(engine: Engine, context: PropsContext): Json {
  const tokenizer = engine.tokenizer;
  const special = (id: number | undefined): string => (id === undefined ? "" : tokenizer.piece(id));
  const limits = engine.limits;
  return {
    default_generation_settings: { n_ctx: limits.contextLength, params: defaultParamsJson() },
    total_slots: limits.maxSequences,
    model_alias: context.modelId,
    ...(context.modelPath === undefined ? {} : { model_path: publicModelPath(context.modelPath) }),
    modalities: { vision: false, video: false, audio: false },
    endpoint_slots: false,
    endpoint_props: false,
    endpoint_metrics: true,
    chat_template: tokenizer.chatTemplate ?? "",
    bos_token: special(tokenizer.bos),
    eos_token: special(tokenizer.eos),
    build_info: `gguf-webgpu: ${engine.description}`,
    is_sleeping: false,
  };
}
