/**
 * olmo2 (OLMo 2), as llama.cpp's src/models/olmo2.cpp: no pre-norms (attention and the
 * feed-forward read the residual stream itself); RMSNorm of the whole Q and K projections
 * (weights of their full widths, not per head) before NeoX RoPE; each block's output normed
 * before it joins the residual (post-attention and post-feed-forward norms); SwiGLU; an
 * output matrix of its own.
 *
 * OLMo 3's sliding-window layers (olmo2 files with `attention.sliding_window`) are refused.
 */
import { ModelConfigError } from "../../errors.ts";
import { getNumber } from "../../gguf/metadata.ts";
import { type ArchitectureDef, kvDim, type LayerOp, type LayerTensorDef, matrix, qDim, vector } from "./types.ts";

const embd = (c: { nEmbd: number }) => c.nEmbd;
const ff = (c: { nFf: number }) => c.nFf;

/** Attention with Q/K norms and a post-norm, then SwiGLU with a post-norm (llama.cpp's order). */
const OLMO2_TENSORS: readonly LayerTensorDef[] = [
  matrix("q", embd, qDim),
  matrix("k", embd, kvDim),
  matrix("v", embd, kvDim),
  matrix("o", qDim, embd, { writesResidual: true }),
  vector("qNorm", "norm", qDim),
  vector("kNorm", "norm", kvDim),
  vector("attnPostNorm", "norm", embd),
  matrix("gate", embd, ff),
  matrix("up", embd, ff),
  matrix("down", ff, embd, { writesResidual: true }),
  vector("ffnPostNorm", "norm", embd),
];

const OLMO2_LAYER: readonly LayerOp[] = [
  { op: "qkv", bias: false, input: "x" },
  { op: "qkNorm", over: "all" },
  { op: "rope" },
  { op: "attention" },
  { op: "output" },
  { op: "postNorm", weight: "attnPostNorm" },
  { op: "gatedFfn", activation: "silu", input: "x" },
  { op: "postNorm", weight: "ffnPostNorm" },
];

export const olmo2: ArchitectureDef = {
  name: "olmo2",
  summary: "no pre-norms, post-attention and post-FFN norms, Q/K RMSNorm over the whole projection, SwiGLU, NeoX RoPE",
  ropeLayout: "neox",
  ropeBaseDefault: 10000,
  // qkNorm is the per-head flag (qwen3's, fused into RoPE); olmo2's norms are the op's `all`.
  features: () => ({ qkvBias: false, qkNorm: false }),
  scalars: (m, key) => {
    const window = key("attention.sliding_window");
    if (getNumber(m, window, 0) > 0) throw new ModelConfigError(window, "sliding-window olmo2 layers (OLMo 3) are not supported");
    return {};
  },
  layerTensors: OLMO2_TENSORS,
  layerOps: () => OLMO2_LAYER,
  // OLMo 2's tokenizer (cl100k-based) is pre-tokenized as llama.cpp's "dbrx".
  tokenizerPre: "dbrx",
};
