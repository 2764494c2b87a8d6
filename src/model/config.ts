/**
 * The typed description of a model, derived from GGUF metadata. Everything the forward
 * pass (CPU or GPU) needs to know about shapes and constants lives here, so no other
 * code reads architecture-specific metadata keys.
 */
import { ModelConfigError } from "../errors.ts";
import { getArray, getNumber, getString, hasKey, type Metadata } from "../gguf/metadata.ts";
import type { GGUFFile } from "../gguf/reader.ts";
import {
  type Architecture,
  architecture,
  type ArchitectureDef,
  type ArchitectureScalars,
  GLOBAL_TENSOR_NAMES,
  LAYER_TENSOR_SUFFIX,
  type LayerTensorKey,
  LONG_ROPE_TENSOR_NAMES,
  modelTensors,
  ROPE_FREQS_TENSOR_NAME,
} from "./arch/index.ts";

export { type Architecture, GLOBAL_TENSOR_NAMES, LONG_ROPE_TENSOR_NAMES, ROPE_FREQS_TENSOR_NAME };

/** RoPE pairing: `normal` rotates adjacent pairs (2i, 2i+1); `neox` rotates (i, i + d/2). */
export type RopeLayout = "normal" | "neox";

/** Frequency scaling applied on top of the base (none, linear, or Llama 3's). */
export type RopeScaling =
  | { readonly type: "none" }
  | { readonly type: "linear"; readonly factor: number }
  | {
      readonly type: "llama3";
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalContextLength: number;
    };

export interface RopeConfig {
  readonly layout: RopeLayout;
  /** `rope.freq_base` (theta). */
  readonly base: number;
  /** Number of leading dimensions of each head that are rotated (`rope.dimension_count`). */
  readonly dims: number;
  readonly scaling: RopeScaling;
  /**
   * Multiplies cos and sin of every rotation (`rope.scaling.attn_factor`, which phi3's
   * converter writes for LongRoPE, and llama.cpp reads for every family); absent = 1.
   */
  readonly attnFactor?: number;
}

/**
 * LongRoPE (phi3): the file holds `rope_factors_long` and `rope_factors_short`; a sequence
 * whose context exceeds `originalContextLength` rotates by the long divisors, others by the
 * short ones (llama.cpp's get_rope_factors, by the context the runner was given).
 */
export interface LongRopeConfig {
  /** `rope.scaling.original_context_length` (the context length when absent). */
  readonly originalContextLength: number;
}

export interface ModelConfig extends ArchitectureScalars {
  readonly arch: Architecture;
  /**
   * Name of a tensor of per-pair RoPE frequency divisors (`rope_freqs.weight`, ropeDims/2
   * values), when the file has one. llama.cpp's converter stores Llama 3's frequency
   * scaling this way, precomputed, instead of as metadata: the `llama3` parameters of
   * {@link RopeScaling} cannot be recovered from a GGUF, so `rope.scaling` then stays
   * what the metadata says (usually `none`) and the divisors come from this tensor.
   */
  readonly ropeFreqFactors?: string;
  /** Present when the file has LongRoPE factor tensors ({@link LONG_ROPE_TENSOR_NAMES}). */
  readonly longRope?: LongRopeConfig;
  /** `general.name`, or the file name when absent. */
  readonly name: string;
  readonly nLayers: number;
  /** Width of the residual stream. */
  readonly nEmbd: number;
  readonly nHeads: number;
  /** Key/value heads (grouped-query attention when fewer than `nHeads`). */
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Hidden width of the feed-forward block. */
  readonly nFf: number;
  readonly vocabSize: number;
  readonly contextLength: number;
  /** RMSNorm epsilon. */
  readonly normEps: number;
  readonly rope: RopeConfig;
  /** qwen2: biases on the Q, K and V projections. */
  readonly qkvBias: boolean;
  /** qwen3: RMSNorm on each head of Q and K before RoPE. */
  readonly qkNorm: boolean;
  /** No `output.weight`: logits come from `token_embd.weight`. */
  readonly tiedEmbeddings: boolean;
}

/** GGUF tensor names of one layer, as llama.cpp writes them (every key any architecture has). */
export function layerTensorNames(layer: number): Readonly<Record<LayerTensorKey, string>> {
  const entries = Object.entries(LAYER_TENSOR_SUFFIX).map(([key, suffix]) => [key, `blk.${layer}.${suffix}`]);
  return Object.fromEntries(entries) as Record<LayerTensorKey, string>;
}

/**
 * The {@link ModelConfig} of an opened GGUF model, from its `<arch>.*` metadata, checked
 * against itself and against the shapes of every tensor the forward pass uses. Throws
 * `ModelConfigError` naming the metadata key or tensor that is missing or inconsistent.
 *
 * The architecture's file (src/model/arch/) decides its flags (`qkvBias` is also set for a
 * `llama` file that has `attn_q.bias` tensors, as llama.cpp loads them when present) and
 * its tensors; `ropeFreqFactors` names `rope_freqs.weight` when the file has it.
 */
export function modelConfigFromGGUF(file: GGUFFile): ModelConfig {
  const m = file.metadata;
  const def = architecture(getString(m, "general.architecture"));
  const arch = def.name as Architecture;
  const key = (suffix: string) => `${arch}.${suffix}`;
  const count = (suffix: string, fallback?: number) => positiveInteger(m, key(suffix), fallback);

  const nLayers = count("block_count");
  const nEmbd = count("embedding_length");
  const nHeads = count("attention.head_count");
  const nKvHeads = count("attention.head_count_kv", nHeads);
  if (nHeads % nKvHeads !== 0) {
    throw new ModelConfigError(
      key("attention.head_count_kv"),
      `${nKvHeads} key/value heads do not divide ${key("attention.head_count")}=${nHeads}`,
    );
  }
  if (!hasKey(m, key("attention.key_length")) && nEmbd % nHeads !== 0) {
    throw new ModelConfigError(
      key("attention.head_count"),
      `${nHeads} heads do not divide ${key("embedding_length")}=${nEmbd}, and attention.key_length is absent`,
    );
  }
  const headDim = count("attention.key_length", nEmbd / nHeads);
  const valueLength = count("attention.value_length", headDim);
  if (valueLength !== headDim) {
    throw new ModelConfigError(key("attention.value_length"), `${valueLength} differs from key_length ${headDim}`);
  }
  const rope = ropeConfig(m, def, headDim);
  const contextLength = count("context_length");
  const vocabSize = vocabularySize(file, key("vocab_size"));
  const config: ModelConfig = {
    arch,
    name: getString(m, "general.name", baseName(file.name)),
    nLayers,
    nEmbd,
    nHeads,
    nKvHeads,
    headDim,
    nFf: count("feed_forward_length"),
    vocabSize,
    contextLength,
    normEps: positiveNumber(m, key("attention.layer_norm_rms_epsilon")),
    rope,
    ...def.features(file),
    ...def.scalars?.(m, key, { nLayers, nEmbd, nHeads, headDim }),
    tiedEmbeddings: file.tensor(GLOBAL_TENSOR_NAMES.output) === undefined,
    ...(file.tensor(ROPE_FREQS_TENSOR_NAME) ? { ropeFreqFactors: ROPE_FREQS_TENSOR_NAME } : {}),
    ...longRopeConfig(file, arch, contextLength),
  };
  checkTensorShapes(file, def, config);
  return config;
}

function positiveInteger(m: Metadata, key: string, fallback?: number): number {
  const n = getNumber(m, key, fallback);
  if (!Number.isSafeInteger(n) || n < 1) throw new ModelConfigError(key, `expected a positive whole number, found ${n}`);
  return n;
}

function positiveNumber(m: Metadata, key: string, fallback?: number): number {
  const n = getNumber(m, key, fallback);
  if (!(n > 0) || !Number.isFinite(n)) throw new ModelConfigError(key, `expected a positive number, found ${n}`);
  return n;
}

function baseName(name: string): string {
  const last = name.split(/[?#]/)[0]?.split(/[\\/]/).pop() ?? name;
  return last.replace(/\.gguf$/i, "") || name;
}

function ropeConfig(m: Metadata, def: ArchitectureDef, headDim: number): RopeConfig {
  const key = (suffix: string) => `${def.name}.rope.${suffix}`;
  const dims = positiveInteger(m, key("dimension_count"), headDim);
  if (dims % 2 !== 0 || dims > headDim) {
    throw new ModelConfigError(key("dimension_count"), `${dims} must be even and at most the head size ${headDim}`);
  }
  return {
    layout: def.ropeLayout,
    base: positiveNumber(m, key("freq_base"), def.ropeBaseDefault),
    dims,
    scaling: ropeScaling(m, def.name),
    ...(hasKey(m, key("scaling.attn_factor")) ? { attnFactor: positiveNumber(m, key("scaling.attn_factor")) } : {}),
  };
}

/** `{ longRope }` when the file has LongRoPE factors (both, or ModelConfigError naming the missing one). */
function longRopeConfig(file: GGUFFile, arch: string, contextLength: number): { longRope?: LongRopeConfig } {
  const { long, short } = LONG_ROPE_TENSOR_NAMES;
  const hasLong = file.tensor(long) !== undefined;
  if (hasLong !== (file.tensor(short) !== undefined)) {
    throw new ModelConfigError(hasLong ? short : long, `tensor is missing (LongRoPE needs both ${long} and ${short})`);
  }
  if (!hasLong) return {};
  const originalContextLength = positiveInteger(file.metadata, `${arch}.rope.scaling.original_context_length`, contextLength);
  return { longRope: { originalContextLength } };
}

function ropeScaling(m: Metadata, arch: string): RopeScaling {
  const typeKey = `${arch}.rope.scaling.type`;
  const type = getString(m, typeKey, "none");
  if (type === "linear") return { type: "linear", factor: positiveNumber(m, `${arch}.rope.scaling.factor`) };
  if (type !== "none") throw new ModelConfigError(typeKey, `"${type}" is not supported (none, linear)`);
  // Files from before rope.scaling.* stored a linear factor under this key.
  const legacy = `${arch}.rope.scale_linear`;
  if (hasKey(m, legacy)) {
    const factor = positiveNumber(m, legacy);
    if (factor !== 1) return { type: "linear", factor };
  }
  return { type: "none" };
}

function vocabularySize(file: GGUFFile, vocabKey: string): number {
  const embd = file.tensor(GLOBAL_TENSOR_NAMES.embedding);
  if (!embd) throw new ModelConfigError(GLOBAL_TENSOR_NAMES.embedding, "tensor is missing");
  const fromTensor = embd.shape[1] ?? 1;
  const tokensKey = "tokenizer.ggml.tokens";
  if (hasKey(file.metadata, tokensKey)) {
    const n = getArray(file.metadata, tokensKey).length;
    if (n !== fromTensor) {
      throw new ModelConfigError(tokensKey, `${n} tokens, but ${embd.name} has shape [${embd.shape.join(", ")}]`);
    }
  }
  if (hasKey(file.metadata, vocabKey)) {
    const n = positiveInteger(file.metadata, vocabKey);
    if (n !== fromTensor) throw new ModelConfigError(vocabKey, `${n}, but ${embd.name} has shape [${embd.shape.join(", ")}]`);
  }
  return fromTensor;
}

/** Drops trailing 1s: `[n]` and `[n, 1]` describe the same vector. */
function squeeze(shape: readonly number[]): string {
  const s = [...shape];
  while (s.length > 1 && s[s.length - 1] === 1) s.pop();
  return s.join(", ");
}

/** Checks every tensor the architecture's table lists for `c` against the file. */
function checkTensorShapes(file: GGUFFile, def: ArchitectureDef, c: ModelConfig): void {
  const dims = `n_embd=${c.nEmbd}, heads=${c.nHeads}, kv_heads=${c.nKvHeads}, head_dim=${c.headDim}, n_ff=${c.nFf}, vocab=${c.vocabSize}`;
  for (const { name, shape: expected } of modelTensors(def, c)) {
    const t = file.tensor(name);
    if (!t) throw new ModelConfigError(name, `tensor is missing (required by ${c.arch} with ${c.nLayers} layers)`);
    if (squeeze(t.shape) !== squeeze(expected)) {
      throw new ModelConfigError(name, `shape [${t.shape.join(", ")}], expected [${expected.join(", ")}] from ${dims}`);
    }
  }
}
