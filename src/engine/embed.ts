/**
 * Embeddings: what `engine.embed()` takes and gives, and the pure steps around the
 * runner's pooled forward pass (which inputs are valid, which pooling a file asks for,
 * normalisation and `dimensions` truncation). The engine (engine.ts) lends the runner a
 * slot and KV pages for each input; the runner (model/runner.ts `embed`) returns the
 * pooled final hidden state.
 *
 * ```ts
 * const { embeddings, promptTokens } = await engine.embed(["a cat", "a dog"], { dimensions: 64 });
 * // embeddings[i]: Float32Array of 64 values, unit L2 norm
 * ```
 */
import type { Pooling } from "../model/runner.ts";
import { InvalidRequestError } from "./errors.ts";

export type { Pooling };

/** Texts (tokenized with the model's BOS/EOS rules) or token-id lists (fed as given). */
export type EmbedInput = string | readonly string[] | readonly number[] | readonly (readonly number[])[];

/** Options of {@link Engine.embed}. */
export interface EmbedOptions {
  /**
   * Keep the first `dimensions` values of each vector (Matryoshka truncation, as OpenAI's
   * `dimensions`), then renormalise. Default: all of the model's `nEmbd`.
   */
  readonly dimensions?: number;
  /** Scale each vector to unit L2 norm (default true). */
  readonly normalize?: boolean;
  /** Aborting rejects with RequestAbortedError and gives the slot and pages back. */
  readonly signal?: AbortSignal;
}

/** What {@link Engine.embed} resolves to. */
export interface EmbeddingResult {
  /** One vector per input, in input order. */
  readonly embeddings: Float32Array[];
  /** Tokens fed over all inputs (BOS/EOS included where the tokenizer adds them). */
  readonly promptTokens: number;
  /** How the hidden states were pooled (from the file's `pooling_type`). */
  readonly pooling: Pooling;
}

/** llama.cpp's `enum llama_pooling_type` values as GGUF stores them. */
const POOLING_CODES: Readonly<Record<number, Pooling | "none" | "rank">> = { 0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank" };

/** The `<arch>.pooling_type` value that asks for `pooling` (for writers of GGUF files). */
export function poolingTypeCode(pooling: Pooling): number {
  return Number(Object.entries(POOLING_CODES).find(([, name]) => name === pooling)![0]);
}

/** Whether `value` names a pooling (`mean`, `cls`, `last`). */
export function isPooling(value: string): value is Pooling {
  return value === "mean" || value === "cls" || value === "last";
}

/**
 * The pooling a file asks for in `<arch>.pooling_type`. Unspecified (absent, or 0
 * "none": llama.cpp cannot tell them apart) gives `last`, what decoder embedding models
 * such as Qwen3-Embedding use and what llama.cpp returns for a sequence without pooling.
 * Rank (a classifier head) and unknown values are refused naming the key.
 */
export function poolingOf(metadata: Readonly<Record<string, unknown>>): Pooling {
  const arch = metadata["general.architecture"];
  const key = `${typeof arch === "string" ? arch : "general"}.pooling_type`;
  const value = metadata[key];
  if (value === undefined) return "last";
  const code = typeof value === "bigint" ? Number(value) : value;
  const pooling = typeof code === "number" ? POOLING_CODES[code] : undefined;
  if (pooling === undefined) {
    throw new InvalidRequestError(key, `pooling type ${String(value)} is not one of 0 (none), 1 (mean), 2 (cls), 3 (last)`, "POOLING_UNSUPPORTED");
  }
  if (pooling === "rank") {
    throw new InvalidRequestError(key, "pooling type 4 (rank) scores with a classifier head; this model gives no embeddings", "POOLING_UNSUPPORTED");
  }
  return pooling === "none" ? "last" : pooling;
}

/**
 * The inputs as a list: each a text or a token-id list, with the name the errors use
 * (`input`, `input[i]`). Empty inputs, empty texts and non-integer ids are refused.
 */
export function embedInputsOf(input: EmbedInput): { readonly param: string; readonly value: string | readonly number[] }[] {
  if (typeof input === "string") {
    if (input.length === 0) throw new InvalidRequestError("input", "is an empty string");
    return [{ param: "input", value: input }];
  }
  if (!Array.isArray(input)) throw new InvalidRequestError("input", "must be a string, an array of strings, or token ids");
  if (input.length === 0) throw new InvalidRequestError("input", "is an empty array");
  if (input.every((t) => typeof t === "number")) return [{ param: "input", value: checkedIds(input as readonly number[], "input") }];
  return (input as readonly unknown[]).map((item, i) => {
    const param = `input[${i}]`;
    if (typeof item === "string") {
      if (item.length === 0) throw new InvalidRequestError(param, "is an empty string");
      return { param, value: item };
    }
    if (!Array.isArray(item)) throw new InvalidRequestError(param, "must be a string or an array of token ids");
    if (item.length === 0) throw new InvalidRequestError(param, "is an empty array of token ids");
    return { param, value: checkedIds(item as readonly unknown[], param) };
  });
}

function checkedIds(ids: readonly unknown[], param: string): number[] {
  ids.forEach((t, j) => {
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0) {
      throw new InvalidRequestError(`${param}[${j}]`, `${String(t)} is not a token id`);
    }
  });
  return [...(ids as readonly number[])];
}

/** `dimensions` checked against the model's width (InvalidRequestError naming it). */
export function checkDimensions(dimensions: number | undefined, width: number): number {
  if (dimensions === undefined) return width;
  if (!Number.isInteger(dimensions) || dimensions < 1 || dimensions > width) {
    throw new InvalidRequestError("dimensions", `${dimensions} is not a whole number in [1, ${width}] (the model's embedding width)`);
  }
  return dimensions;
}

/** The first `dimensions` values of `vector`, scaled to unit L2 norm when `normalize` (a zero vector stays zero). */
export function finishEmbedding(vector: Float32Array, dimensions: number, normalize: boolean): Float32Array {
  const out = vector.slice(0, dimensions);
  if (!normalize) return out;
  let sum = 0;
  for (const v of out) sum += v * v;
  const norm = Math.sqrt(sum);
  if (norm > 0) for (let i = 0; i < out.length; i++) out[i] = out[i]! / norm;
  return out;
}
