/**
 * The typed description of a model, derived from GGUF metadata. Everything the forward
 * pass (CPU or GPU) needs to know about shapes and constants lives here, so no other
 * code reads architecture-specific metadata keys.
 */

/** Architectures the runtime runs. */
export type Architecture = "llama" | "qwen2" | "qwen3";

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
}

export interface ModelConfig {
  readonly arch: Architecture;
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

/** GGUF tensor names of one layer, as llama.cpp writes them. */
export function layerTensorNames(layer: number) {
  const p = `blk.${layer}.`;
  return {
    attnNorm: `${p}attn_norm.weight`,
    q: `${p}attn_q.weight`,
    k: `${p}attn_k.weight`,
    v: `${p}attn_v.weight`,
    qBias: `${p}attn_q.bias`,
    kBias: `${p}attn_k.bias`,
    vBias: `${p}attn_v.bias`,
    qNorm: `${p}attn_q_norm.weight`,
    kNorm: `${p}attn_k_norm.weight`,
    o: `${p}attn_output.weight`,
    ffnNorm: `${p}ffn_norm.weight`,
    gate: `${p}ffn_gate.weight`,
    up: `${p}ffn_up.weight`,
    down: `${p}ffn_down.weight`,
  } as const;
}

/** GGUF tensor names outside the layers. */
export const GLOBAL_TENSOR_NAMES = {
  embedding: "token_embd.weight",
  outputNorm: "output_norm.weight",
  output: "output.weight",
} as const;
