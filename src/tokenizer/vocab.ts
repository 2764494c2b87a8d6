/**
 * The vocabulary part of GGUF metadata (`tokenizer.ggml.*`), read the way llama.cpp's
 * `llama_vocab::load` reads it: the same defaults, the same special-token detection by
 * text, and the same token attributes, so that tokenization and detokenization can
 * follow llama.cpp exactly.
 */
import { TokenizerError } from "../errors.ts";
import { type PreTokenizer, preTokenizerByName } from "./pretokenize.ts";

/**
 * GGUF metadata as a plain record: values either bare (`string`, `number`, `bigint`,
 * `boolean`, arrays of them) or wrapped as `{ type, value }` entries, as the GGUF writer
 * takes them.
 */
export type TokenizerMetadata = Readonly<Record<string, unknown>>;

/** GGUF `tokenizer.ggml.token_type` values. */
export const TokenType = {
  Undefined: 0,
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6,
} as const;

/** Token attribute bits (llama.cpp's `llama_token_attr`, the subset tokenization uses). */
export const TokenAttr = {
  Unknown: 1 << 0,
  Unused: 1 << 1,
  Normal: 1 << 2,
  Control: 1 << 3,
  UserDefined: 1 << 4,
  Byte: 1 << 5,
} as const;

/** The vocabulary kinds this runtime tokenizes. */
export type VocabKind = "llama" | "gpt2";

/** A parsed vocabulary: token texts, scores, attributes, merges, special ids and flags. */
export interface Vocab {
  readonly kind: VocabKind;
  readonly tokens: readonly string[];
  readonly tokenToId: ReadonlyMap<string, number>;
  /** SentencePiece scores (float32 values), llama kind only. */
  readonly scores: Float32Array;
  /** `TokenAttr` bits per token. */
  readonly attrs: Uint8Array;
  /** Merge ranks keyed by `left + "\0" + right` (gpt2 kind). */
  readonly mergeRanks: ReadonlyMap<string, number>;
  readonly pre: PreTokenizer;
  readonly bos?: number;
  readonly eos?: number;
  readonly eot?: number;
  readonly eom?: number;
  readonly unk?: number;
  readonly pad?: number;
  readonly eogIds: ReadonlySet<number>;
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** SentencePiece's dummy prefix: a space before text at the start and after special tokens. */
  readonly addSpacePrefix: boolean;
  /** Detokenize applies `clean_up_tokenization_spaces`. */
  readonly cleanSpaces: boolean;
}

/** The separator of merge-rank keys; no token text contains NUL. */
export const MERGE_KEY_SEPARATOR = "\u0000";

/** A metadata value with any `{ type, value }` wrapper removed. */
export function metadataValue(meta: TokenizerMetadata, key: string): unknown {
  const v = meta[key];
  if (v !== null && typeof v === "object" && !Array.isArray(v) && "value" in v) {
    return (v as { value: unknown }).value;
  }
  return v;
}

function fail(key: string, message: string): never {
  throw new TokenizerError("BAD_TOKENIZER_METADATA", `${key}: ${message}`);
}

function optionalString(meta: TokenizerMetadata, key: string): string | undefined {
  const v = metadataValue(meta, key);
  if (v === undefined) return undefined;
  if (typeof v !== "string") fail(key, `expected a string, found ${describe(v)}`);
  return v;
}

function optionalBool(meta: TokenizerMetadata, key: string): boolean | undefined {
  const v = metadataValue(meta, key);
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") fail(key, `expected a boolean, found ${describe(v)}`);
  return v;
}

/** A token id key; a negative value (some converters write -1) means "none". */
function optionalTokenId(meta: TokenizerMetadata, key: string): number | undefined {
  const v = metadataValue(meta, key);
  if (v === undefined) return undefined;
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n)) fail(key, `expected a token id, found ${describe(v)}`);
  return n < 0 ? undefined : n;
}

function numberArray(meta: TokenizerMetadata, key: string, minLength: number): ArrayLike<number> | undefined {
  const v = metadataValue(meta, key);
  if (v === undefined) return undefined;
  if (!Array.isArray(v) && !(ArrayBuffer.isView(v) && !(v instanceof DataView))) {
    fail(key, `expected an array of numbers, found ${describe(v)}`);
  }
  const arr = v as ArrayLike<unknown>;
  if (arr.length < minLength) fail(key, `has ${arr.length} entries, fewer than the ${minLength} tokens`);
  for (let i = 0; i < minLength; i++) {
    const x = arr[i];
    if (typeof x !== "number" && typeof x !== "bigint") fail(key, `entry ${i} is ${describe(x)}, not a number`);
  }
  return arr as ArrayLike<number>;
}

function stringArray(meta: TokenizerMetadata, key: string): string[] | undefined {
  const v = metadataValue(meta, key);
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) fail(key, `expected an array of strings, found ${describe(v)}`);
  for (let i = 0; i < v.length; i++) {
    if (typeof v[i] !== "string") fail(key, `entry ${i} is ${describe(v[i])}, not a string`);
  }
  return v as string[];
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "string") return `"${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  return typeof v === "bigint" ? `${v}n` : String(v);
}

function attrOfType(type: number): number {
  switch (type) {
    case TokenType.Normal:
      return TokenAttr.Normal;
    case TokenType.Unknown:
      return TokenAttr.Unknown;
    case TokenType.Control:
      return TokenAttr.Control;
    case TokenType.UserDefined:
      return TokenAttr.UserDefined;
    case TokenType.Unused:
      return TokenAttr.Unused;
    case TokenType.Byte:
      return TokenAttr.Byte;
    default:
      return 0; // undefined: detokenizes to nothing
  }
}

// Token texts llama.cpp takes as end-of-turn when no `eot_token_id` key says otherwise.
const EOT_TEXTS = [
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
  "<｜end▁of▁sentence｜>", "<end_of_utterance>",
];

// Token texts that end generation (llama.cpp's list, by text, since GGUF has no flag for it).
const EOG_TEXTS = new Set([
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
  "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>",
  "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
]);

// Fill-in-the-middle pad/repo/file-separator tokens, which llama.cpp also treats as end of generation.
const FIM_EOG: readonly (readonly [string, readonly string[]])[] = [
  ["fim_pad_token_id", ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]],
  ["fim_rep_token_id", ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]],
  ["fim_sep_token_id", ["<|file_sep|>"]],
];

// gpt-oss channel markers are always rendered (llama.cpp makes them user-defined).
const ALWAYS_RENDERED = new Set(["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]);

/** Reads the vocabulary from metadata; throws `TokenizerError` on missing or malformed keys. */
export function readVocab(meta: TokenizerMetadata): Vocab {
  const model = optionalString(meta, "tokenizer.ggml.model");
  if (model === undefined) fail("tokenizer.ggml.model", "missing; the model has no tokenizer");
  if (model !== "llama" && model !== "gpt2") {
    throw new TokenizerError("UNSUPPORTED_TOKENIZER", `tokenizer.ggml.model = "${model}" is not supported (only "llama" and "gpt2")`);
  }
  const kind: VocabKind = model;
  const { tokens, tokenToId, scores, attrs } = readTokenTable(meta);
  const n = tokens.length;
  const defaults = kindDefaults(kind, meta);

  // Explicit ids replace the defaults when in range; defaults out of range are dropped.
  const special = (key: string, fallback?: number): number | undefined => {
    const initial = fallback !== undefined && fallback < n ? fallback : undefined;
    const id = optionalTokenId(meta, `tokenizer.ggml.${key}`);
    return id !== undefined && id < n ? id : initial;
  };
  const bos = special("bos_token_id", defaults.bos);
  const eos = special("eos_token_id", defaults.eos);
  const unk = special("unknown_token_id", defaults.unk);
  const pad = special("padding_token_id");
  const eog = endOfGeneration(tokens, tokenToId, attrs, {
    eos,
    eot: special("eot_token_id"),
    eom: special("eom_token_id"),
    fim: FIM_EOG.map(([key]) => special(key)),
  });

  return {
    kind, tokens, tokenToId, scores, attrs, mergeRanks: defaults.mergeRanks, pre: defaults.pre,
    bos, eos, eot: eog.eot, eom: eog.eom, unk, pad, eogIds: eog.ids,
    addBos: optionalBool(meta, "tokenizer.ggml.add_bos_token") ?? defaults.addBos,
    addEos: optionalBool(meta, "tokenizer.ggml.add_eos_token") ?? false,
    addSpacePrefix: optionalBool(meta, "tokenizer.ggml.add_space_prefix") ?? defaults.addSpacePrefix,
    cleanSpaces: defaults.cleanSpaces,
  };
}

/** Token texts (unique), scores as float32, and attributes from the token types. */
function readTokenTable(meta: TokenizerMetadata) {
  const rawTokens = stringArray(meta, "tokenizer.ggml.tokens");
  if (rawTokens === undefined) fail("tokenizer.ggml.tokens", "missing");
  const n = rawTokens.length;
  if (n === 0) fail("tokenizer.ggml.tokens", "is empty");
  const tokens: string[] = new Array<string>(n);
  const tokenToId = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    // llama.cpp renames empty entries so that every text is a distinct key.
    const text = rawTokens[i] === "" ? `[EMPTY_${i}]` : (rawTokens[i] as string);
    if (tokenToId.has(text)) fail("tokenizer.ggml.tokens", `token ${i} "${text}" repeats token ${tokenToId.get(text)}`);
    tokens[i] = text;
    tokenToId.set(text, i);
  }
  const scores = new Float32Array(n);
  const rawScores = numberArray(meta, "tokenizer.ggml.scores", n);
  if (rawScores) for (let i = 0; i < n; i++) scores[i] = Number(rawScores[i]);
  const attrs = new Uint8Array(n).fill(TokenAttr.Normal);
  const rawTypes = numberArray(meta, "tokenizer.ggml.token_type", n);
  if (rawTypes) for (let i = 0; i < n; i++) attrs[i] = attrOfType(Number(rawTypes[i]));
  return { tokens, tokenToId, scores, attrs };
}

/** What a vocabulary kind implies before explicit keys are read. */
interface KindDefaults {
  readonly pre: PreTokenizer;
  readonly mergeRanks: ReadonlyMap<string, number>;
  readonly addBos: boolean;
  readonly addSpacePrefix: boolean;
  readonly cleanSpaces: boolean;
  readonly bos?: number;
  readonly eos?: number;
  readonly unk?: number;
}

/** llama.cpp's defaults for a kind, and (gpt2) the merge ranks. */
function kindDefaults(kind: VocabKind, meta: TokenizerMetadata): KindDefaults {
  if (kind === "llama") {
    return {
      pre: preTokenizerByName("default"),
      mergeRanks: new Map<string, number>(),
      addBos: true,
      addSpacePrefix: true,
      cleanSpaces: false,
      bos: 1,
      eos: 2,
      unk: 0,
    };
  }
  const merges = stringArray(meta, "tokenizer.ggml.merges");
  if (merges === undefined) fail("tokenizer.ggml.merges", "missing (a gpt2 tokenizer needs it)");
  const mergeRanks = new Map<string, number>();
  merges.forEach((merge, rank) => {
    // Split at the first space after the first character, as llama.cpp does.
    const at = merge.indexOf(" ", 1);
    const key = at < 0 ? MERGE_KEY_SEPARATOR : merge.slice(0, at) + MERGE_KEY_SEPARATOR + merge.slice(at + 1);
    if (!mergeRanks.has(key)) mergeRanks.set(key, rank);
  });
  const pre = preTokenizerByName(optionalString(meta, "tokenizer.ggml.pre"));
  return {
    pre,
    mergeRanks,
    addBos: pre.addBosDefault,
    addSpacePrefix: false,
    cleanSpaces: pre.cleanSpaces,
    bos: 11,
    eos: 11,
  };
}

/**
 * The end-of-generation set as llama.cpp builds it: EOS, EOT, EOM and fill-in-the-middle
 * pad/repo/separator tokens (by key, else found by text), plus every token whose text is
 * on its list. Tokens found by text become control tokens, as llama.cpp makes them.
 */
function endOfGeneration(
  tokens: readonly string[],
  tokenToId: ReadonlyMap<string, number>,
  attrs: Uint8Array,
  given: { eos?: number; eot?: number; eom?: number; fim: readonly (number | undefined)[] },
): { ids: Set<number>; eot?: number; eom?: number } {
  const byText = (texts: readonly string[]): number | undefined => {
    const id = texts.map((t) => tokenToId.get(t)).find((x) => x !== undefined);
    if (id !== undefined) attrs[id] = (attrs[id] as number) | TokenAttr.Control;
    return id;
  };
  const ids = new Set<number>();
  FIM_EOG.forEach(([, names], i) => {
    const id = given.fim[i] ?? byText(names);
    if (id !== undefined) ids.add(id);
  });
  // llama.cpp takes the first match in hash-map order, which varies; the list's order is
  // a stable choice that prefers `<|im_end|>` to `<|endoftext|>`.
  const eot = given.eot ?? byText(EOT_TEXTS);
  const eom = given.eom ?? byText(["<|eom_id|>"]);
  for (let id = 0; id < tokens.length; id++) {
    const text = tokens[id] as string;
    const a = attrs[id] as number;
    // Control tokens named "unused" are placeholders.
    if (a & TokenAttr.Control && text.includes("unused")) attrs[id] = a | TokenAttr.Unused;
    if (EOG_TEXTS.has(text)) {
      ids.add(id);
      attrs[id] = (attrs[id] as number) | TokenAttr.Control;
    }
    if (ALWAYS_RENDERED.has(text)) attrs[id] = TokenAttr.UserDefined;
  }
  for (const id of [given.eos, eot, eom]) if (id !== undefined) ids.add(id);
  dropExceptions(tokenToId, ids, attrs);
  return { ids, eot, eom };
}

/**
 * llama.cpp's two exceptions to its end-of-generation list: with `<|return|>` and
 * `<|call|>` (gpt-oss), `<|end|>` only ends a message; with `<|tool_response>` (Gemma 4),
 * `</s>` is ordinary text.
 */
function dropExceptions(tokenToId: ReadonlyMap<string, number>, eog: Set<number>, attrs: Uint8Array): void {
  const inEog = (text: string): number | undefined => {
    const id = tokenToId.get(text);
    return id !== undefined && eog.has(id) ? id : undefined;
  };
  const end = inEog("<|end|>");
  const hasCall = inEog("<|call|>") !== undefined || inEog("<|calls|>") !== undefined;
  if (end !== undefined && hasCall && (inEog("<|return|>") !== undefined || inEog("<|flush|>") !== undefined)) {
    eog.delete(end);
    attrs[end] = TokenAttr.UserDefined;
  }
  const s = inEog("</s>");
  if (s !== undefined && inEog("<|tool_response>") !== undefined) {
    eog.delete(s);
    attrs[s] = TokenAttr.Normal;
  }
}
