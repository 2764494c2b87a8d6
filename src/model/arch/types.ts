/**
 * What an architecture file declares: its tensors (one table of names, shapes from the
 * config) and its layer as a list of named ops. The CPU reference (reference.ts) and the
 * GPU forward pass (gpu-forward.ts) both interpret the op list; the config check, the GPU
 * weights, the synthetic writer and `inspect` read the tensor list. So a family's
 * differences are a few visible lines in its own file, like llama.cpp's src/models/*.cpp.
 */
import type { Metadata } from "../../gguf/metadata.ts";
import type { GGUFFile } from "../../gguf/reader.ts";
import type { ModelConfig, RopeLayout } from "../config.ts";

/**
 * Every per-layer tensor any architecture has, by role. The GGUF name of each is declared
 * once, in {@link LAYER_TENSOR_SUFFIX} (as llama.cpp's llama-arch.cpp declares them).
 */
export type LayerTensorKey =
  | "attnNorm"
  | "q"
  | "k"
  | "v"
  | "qkv"
  | "qBias"
  | "kBias"
  | "vBias"
  | "qNorm"
  | "kNorm"
  | "o"
  | "attnPostNorm"
  | "ffnNorm"
  | "gate"
  | "up"
  | "gateUp"
  | "down"
  | "ffnPostNorm";

/** GGUF name of each layer tensor after `blk.<layer>.` (gguf-py's constants.py). */
export const LAYER_TENSOR_SUFFIX: Readonly<Record<LayerTensorKey, string>> = {
  attnNorm: "attn_norm.weight",
  q: "attn_q.weight",
  k: "attn_k.weight",
  v: "attn_v.weight",
  // phi3: Q, K and V in one matrix, their rows stacked (read as row ranges, see FusedTensor).
  qkv: "attn_qkv.weight",
  qBias: "attn_q.bias",
  kBias: "attn_k.bias",
  vBias: "attn_v.bias",
  qNorm: "attn_q_norm.weight",
  kNorm: "attn_k_norm.weight",
  o: "attn_output.weight",
  attnPostNorm: "post_attention_norm.weight",
  ffnNorm: "ffn_norm.weight",
  gate: "ffn_gate.weight",
  up: "ffn_up.weight",
  // phi3: the gate's rows then the up projection's, in one `ffn_up` (llama.cpp's swiglu
  // activates the first half and multiplies by the second).
  gateUp: "ffn_up.weight",
  down: "ffn_down.weight",
  ffnPostNorm: "post_ffw_norm.weight",
};

/** The GGUF name of `key` in `layer`. */
export function layerTensorName(layer: number, key: LayerTensorKey): string {
  return `blk.${layer}.${LAYER_TENSOR_SUFFIX[key]}`;
}

/**
 * What a tensor is: a `matrix` (kept in its GGUF type on the GPU, multiplied), or a `norm`
 * or `bias` vector (f32). `matrix` tensors with `writesResidual` are the ones whose output
 * is added to the residual stream (the synthetic writer scales them down with depth).
 */
export type TensorKind = "matrix" | "norm" | "bias";

/** One per-layer tensor of an architecture. */
export interface LayerTensorDef {
  readonly key: LayerTensorKey;
  readonly kind: TensorKind;
  /** Shape as GGUF writes it (`ne`, innermost first: a matrix is `[in, out]`). */
  readonly shape: (c: ModelConfig) => readonly number[];
  /** Present only when this holds (an optional tensor: the config says whether the file has it). */
  readonly when?: (c: ModelConfig) => boolean;
  /** The matrix writes into the residual stream (attn_output, ffn_down). */
  readonly writesResidual?: boolean;
}

/**
 * One step of a layer. Buffers are named as in llama2.c: `x` the residual stream, `xb`
 * the normed input of a block, `h` a block's output before it joins the residual.
 */
export type LayerOp =
  /** xb = rmsnorm(x) · weight */
  | { readonly op: "norm"; readonly weight: LayerTensorKey }
  /**
   * q, k, v = Wq·xb, Wk·xb, Wv·xb, plus the biases when `bias`; with `input: "x"` they read
   * the residual stream itself (olmo2, which has no pre-norms)
   */
  | { readonly op: "qkv"; readonly bias: boolean; readonly input?: "x" }
  /**
   * q, k = rmsnorm(each head of q) · q_norm, the same for k (`head`: qwen3, gemma3), or
   * rmsnorm(all of q) · q_norm over the whole projection (`all`: olmo2, weights of q's and
   * k's full widths)
   */
  | { readonly op: "qkNorm"; readonly over: "head" | "all" }
  /**
   * q, k rotated by position (the config's RoPE layout, dims and frequencies); with
   * `frequencies: "sliding"` by the sliding-window layers' own table instead (gemma3's
   * local layers: base `slidingRopeBase`, no frequency scaling)
   */
  | { readonly op: "rope"; readonly frequencies?: "sliding" }
  /**
   * k, v stored in the KV cache; att = softmax(q·Kᵀ · scale)·V, causal, grouped-query; the
   * scale and soft-cap are the config's ({@link ArchitectureScalars}); with `window` the
   * query sees only the last `window` positions, itself included (sliding-window layers)
   */
  | { readonly op: "attention"; readonly window?: number }
  /** h = Wo · att */
  | { readonly op: "output" }
  /** x += h */
  | { readonly op: "residual" }
  /**
   * x += rmsnorm(h) · weight: a block's output normed before it joins the residual (gemma2's
   * and gemma3's post-attention and post-FFN norms, olmo2's), in place of a plain `residual`
   */
  | { readonly op: "postNorm"; readonly weight: LayerTensorKey }
  /**
   * h = Wdown · (act(Wgate·xb) ⊙ (Wup·xb)): SwiGLU with silu, GeGLU with gelu (tanh
   * approximation); with `input: "x"` of the residual stream itself (olmo2)
   */
  | { readonly op: "gatedFfn"; readonly activation: "silu" | "gelu"; readonly input?: "x" };

/** Per-layer flags an architecture decides from its file (the rest of the config is metadata). */
export interface ArchitectureFeatures {
  /** Biases on the Q, K and V projections. */
  readonly qkvBias: boolean;
  /** RMSNorm on each head of Q and K before RoPE. */
  readonly qkNorm: boolean;
}

/**
 * Constants some families read from their metadata (absent: the llama behaviour). They sit
 * in the {@link ModelConfig} beside the shapes.
 */
export interface ArchitectureScalars {
  /** Multiplies the token embeddings as they enter the residual stream (gemma: √nEmbd). */
  readonly embeddingScale?: number;
  /** Multiplies q·k in attention; absent: 1/√headDim. */
  readonly attentionScale?: number;
  /** Attention scores become cap·tanh(score/cap) after the scale (gemma2's attn_logit_softcapping). */
  readonly attentionSoftcap?: number;
  /** Logits become cap·tanh(logit/cap) (gemma2's final_logit_softcapping). */
  readonly finalLogitSoftcap?: number;
  /** Positions a sliding-window layer sees (`attention.sliding_window`). */
  readonly slidingWindow?: number;
  /** Per layer: whether it attends through the sliding window (llama.cpp's `is_swa`). */
  readonly slidingLayers?: readonly boolean[];
  /**
   * RoPE base of the sliding-window layers, which rotate with no frequency scaling
   * (gemma3's `rope.freq_base_swa`, default 10,000, as llama.cpp's rope_freq_base_train_swa).
   */
  readonly slidingRopeBase?: number;
  /** Multiplies each block's output as it joins the residual stream (granite's `residual_scale`). */
  readonly residualScale?: number;
  /** Divides the logits (granite's `logit_scale`: llama.cpp multiplies by its f32 reciprocal). */
  readonly logitScale?: number;
}

/**
 * A matrix that holds several of a layer's matrices as consecutive row ranges (phi3's
 * `attn_qkv` = Q, K, V; its `ffn_up` = gate, up). The CPU reference and the GPU read each
 * part in place (a subarray; `weightRows`), so the ops see `q`, `k`, `v`, `gate`, `up`
 * as if the file held them apart.
 */
export interface FusedTensor {
  readonly key: LayerTensorKey;
  /** The parts, first rows first, with their row counts (which add up to the matrix's). */
  readonly parts: readonly { readonly key: LayerTensorKey; readonly rows: (c: ModelConfig) => number }[];
}

/** One part of a fused matrix: rows [firstRow, firstRow + rows) of `from` are matrix `key`. */
export interface FusedPart {
  readonly from: LayerTensorKey;
  readonly key: LayerTensorKey;
  readonly firstRow: number;
  readonly rows: number;
}

/** Every part of the architecture's fused matrices for config `c`, with its first row. */
export function fusedParts(arch: ArchitectureDef, c: ModelConfig): FusedPart[] {
  return (arch.fusedTensors ?? []).flatMap((fused) => {
    let firstRow = 0;
    return fused.parts.map((part) => {
      const rows = part.rows(c);
      const out = { from: fused.key, key: part.key, firstRow, rows };
      firstRow += rows;
      return out;
    });
  });
}

/** One architecture: everything that differs between families. */
export interface ArchitectureDef {
  /** `general.architecture`, also the prefix of its metadata keys. */
  readonly name: string;
  /** One line for `inspect` and the README. */
  readonly summary: string;
  /** llama.cpp's rope type for the architecture (llama_model_rope_type). */
  readonly ropeLayout: RopeLayout;
  /** `<arch>.rope.freq_base` when absent. */
  readonly ropeBaseDefault: number;
  /** The flags that the file decides (for example, by holding optional tensors). */
  features(file: GGUFFile): ArchitectureFeatures;
  /**
   * The family's constants from its metadata; `key(suffix)` is `<arch>.<suffix>`. Throws
   * ModelConfigError naming a key whose value is unusable.
   */
  scalars?(m: Metadata, key: (suffix: string) => string, shape: { readonly nLayers: number; readonly nEmbd: number; readonly nHeads: number; readonly headDim: number }): ArchitectureScalars;
  /** The tensors of one layer, in the order a converter writes them. */
  readonly layerTensors: readonly LayerTensorDef[];
  /** Matrices of `layerTensors` that hold several matrices as row ranges (none by default). */
  readonly fusedTensors?: readonly FusedTensor[];
  /** The ops of `layer`, in order. */
  layerOps(c: ModelConfig, layer: number): readonly LayerOp[];
  /** `tokenizer.ggml.pre` of the family's byte-level BPE tokenizer (one llama.cpp accepts). */
  readonly tokenizerPre: string;
  /** The family's tokenizer model for synthetic files: byte-level BPE (`gpt2`, the default) or SentencePiece (`llama`, gemma's). */
  readonly tokenizerModel?: "gpt2" | "llama";
}

// ---------------------------------------------------------------------------------------
// Shapes and tensor lists the llama-like families share.

/** Width of all query heads. */
export const qDim = (c: ModelConfig): number => c.nHeads * c.headDim;
/** Width of all key (or value) heads. */
export const kvDim = (c: ModelConfig): number => c.nKvHeads * c.headDim;

/** A matrix of ne = [in, out]. */
export function matrix(key: LayerTensorKey, nIn: (c: ModelConfig) => number, nOut: (c: ModelConfig) => number, extra: Partial<LayerTensorDef> = {}): LayerTensorDef {
  return { key, kind: "matrix", shape: (c) => [nIn(c), nOut(c)], ...extra };
}

/** A vector of `n` values. */
export function vector(key: LayerTensorKey, kind: "norm" | "bias", n: (c: ModelConfig) => number, extra: Partial<LayerTensorDef> = {}): LayerTensorDef {
  return { key, kind, shape: (c) => [n(c)], ...extra };
}

const embd = (c: ModelConfig) => c.nEmbd;
const ff = (c: ModelConfig) => c.nFf;
const head = (c: ModelConfig) => c.headDim;
const hasBias = (c: ModelConfig) => c.qkvBias;
const hasQkNorm = (c: ModelConfig) => c.qkNorm;

/**
 * The tensors of a llama-like layer: attention (optional Q/K/V biases and per-head Q/K
 * norms, present when the config says so) and a gated feed-forward, each with a pre-norm.
 */
export const LLAMA_LIKE_TENSORS: readonly LayerTensorDef[] = [
  vector("attnNorm", "norm", embd),
  matrix("q", embd, qDim),
  matrix("k", embd, kvDim),
  matrix("v", embd, kvDim),
  vector("qBias", "bias", qDim, { when: hasBias }),
  vector("kBias", "bias", kvDim, { when: hasBias }),
  vector("vBias", "bias", kvDim, { when: hasBias }),
  vector("qNorm", "norm", head, { when: hasQkNorm }),
  vector("kNorm", "norm", head, { when: hasQkNorm }),
  matrix("o", qDim, embd, { writesResidual: true }),
  vector("ffnNorm", "norm", embd),
  matrix("gate", embd, ff),
  matrix("up", embd, ff),
  matrix("down", ff, embd, { writesResidual: true }),
];

/**
 * A pre-norm llama layer (llama.cpp's src/models/llama.cpp):
 * attnNorm → qkv(+bias) → qkNorm? → rope → attention → output → residual
 *          → ffnNorm → gatedFfn(silu) → residual.
 */
export function llamaLikeLayer(c: ModelConfig): readonly LayerOp[] {
  return [
    { op: "norm", weight: "attnNorm" },
    { op: "qkv", bias: c.qkvBias },
    ...(c.qkNorm ? [{ op: "qkNorm", over: "head" } as const] : []),
    { op: "rope" },
    { op: "attention" },
    { op: "output" },
    { op: "residual" },
    { op: "norm", weight: "ffnNorm" },
    { op: "gatedFfn", activation: "silu" },
    { op: "residual" },
  ];
}

// ---------------------------------------------------------------------------------------
// The model's whole tensor list, derived from the architecture's table.

/** GGUF tensor names outside the layers. */
export const GLOBAL_TENSOR_NAMES = {
  embedding: "token_embd.weight",
  outputNorm: "output_norm.weight",
  output: "output.weight",
} as const;

/** The tensor holding precomputed RoPE frequency divisors (Llama 3 scaling), when present. */
export const ROPE_FREQS_TENSOR_NAME = "rope_freqs.weight";

/**
 * LongRoPE's per-pair frequency divisors (phi3), one tensor for sequences longer than the
 * trained original context and one for the rest (gguf-py's ROPE_FACTORS_LONG/_SHORT).
 */
export const LONG_ROPE_TENSOR_NAMES = { long: "rope_factors_long.weight", short: "rope_factors_short.weight" } as const;

/** One tensor a model of a given config reads. */
export interface ModelTensor {
  readonly name: string;
  /** `host`: read to the CPU only (the RoPE divisors become a frequency table). */
  readonly kind: TensorKind | "host";
  readonly shape: readonly number[];
  /** Where it belongs, for a layer tensor. */
  readonly layer?: { readonly index: number; readonly def: LayerTensorDef };
}

/** The tensors of `layer` that a model of config `c` has, in file order. */
export function layerTensors(arch: ArchitectureDef, c: ModelConfig, layer: number): ModelTensor[] {
  return arch.layerTensors
    .filter((def) => def.when?.(c) ?? true)
    .map((def) => ({ name: layerTensorName(layer, def.key), kind: def.kind, shape: def.shape(c), layer: { index: layer, def } }));
}

/** Every tensor the forward pass reads, in the order a converter writes them. */
export function modelTensors(arch: ArchitectureDef, c: ModelConfig): ModelTensor[] {
  const out: ModelTensor[] = [{ name: GLOBAL_TENSOR_NAMES.embedding, kind: "matrix", shape: [c.nEmbd, c.vocabSize] }];
  if (c.ropeFreqFactors !== undefined) out.push({ name: c.ropeFreqFactors, kind: "host", shape: [c.rope.dims / 2] });
  if (c.longRope !== undefined) {
    for (const name of Object.values(LONG_ROPE_TENSOR_NAMES)) out.push({ name, kind: "host", shape: [c.rope.dims / 2] });
  }
  for (let l = 0; l < c.nLayers; l++) out.push(...layerTensors(arch, c, l));
  out.push({ name: GLOBAL_TENSOR_NAMES.outputNorm, kind: "norm", shape: [c.nEmbd] });
  if (!c.tiedEmbeddings) out.push({ name: GLOBAL_TENSOR_NAMES.output, kind: "matrix", shape: [c.nEmbd, c.vocabSize] });
  return out;
}
