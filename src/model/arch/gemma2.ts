/**
 * gemma2 (Gemma 2), as llama.cpp's src/models/gemma2.cpp: embeddings scaled by √nEmbd;
 * each block pre-normed and post-normed (its output normed before it joins the residual);
 * GeGLU feed-forward (GELU, tanh approximation); attention scores soft-capped at
 * `attn_logit_softcapping` (50) and the logits at `final_logit_softcapping` (30); a sliding
 * window (`attention.sliding_window`, 4096) on even layers; NeoX RoPE; tied output.
 *
 * The attention scale is 1/√headDim, except for the 27B (46 layers): 1/√(nEmbd/nHeads), as
 * llama.cpp (which does not read `query_pre_attn_scalar`). The converter already adds 1 to
 * gemma's norm weights, so the norms are plain RMSNorms.
 */
import { positiveScalar, slidingLayers, slidingWindow } from "./gemma-common.ts";
import { type ArchitectureDef, kvDim, type LayerOp, type LayerTensorDef, matrix, qDim, vector } from "./types.ts";

const embd = (c: { nEmbd: number }) => c.nEmbd;
const ff = (c: { nFf: number }) => c.nFf;

/** Attention with pre- and post-norm, then the GeGLU feed-forward with pre- and post-norm. */
export const GEMMA_TENSORS: readonly LayerTensorDef[] = [
  vector("attnNorm", "norm", embd),
  matrix("q", embd, qDim),
  matrix("k", embd, kvDim),
  matrix("v", embd, kvDim),
  matrix("o", qDim, embd, { writesResidual: true }),
  vector("attnPostNorm", "norm", embd),
  vector("ffnNorm", "norm", embd),
  matrix("gate", embd, ff),
  matrix("up", embd, ff),
  matrix("down", ff, embd, { writesResidual: true }),
  vector("ffnPostNorm", "norm", embd),
];

/** llama.cpp's gemma2 n_layer of the 27B, whose attention scale differs. */
const GEMMA2_27B_LAYERS = 46;

export const gemma2: ArchitectureDef = {
  name: "gemma2",
  summary: "pre- and post-norms, GeGLU, NeoX RoPE, √n_embd embeddings, soft-capped attention and logits, sliding window on even layers",
  ropeLayout: "neox",
  ropeBaseDefault: 10000,
  features: () => ({ qkvBias: false, qkNorm: false }),
  scalars: (m, key, shape) => ({
    // llama.cpp scales by sqrtf(n_embd): the f32 value.
    embeddingScale: Math.fround(Math.sqrt(shape.nEmbd)),
    attentionScale: 1 / Math.sqrt(shape.nLayers === GEMMA2_27B_LAYERS ? shape.nEmbd / shape.nHeads : shape.headDim),
    attentionSoftcap: positiveScalar(m, key("attn_logit_softcapping"), 50),
    finalLogitSoftcap: positiveScalar(m, key("final_logit_softcapping"), 30),
    slidingWindow: slidingWindow(m, key, 4096),
    slidingLayers: slidingLayers(m, key, shape.nLayers, 2),
  }),
  layerTensors: GEMMA_TENSORS,
  layerOps(c, layer): readonly LayerOp[] {
    const window = c.slidingLayers?.[layer] ? c.slidingWindow : undefined;
    return [
      { op: "norm", weight: "attnNorm" },
      { op: "qkv", bias: false },
      { op: "rope" },
      { op: "attention", ...(window !== undefined ? { window } : {}) },
      { op: "output" },
      { op: "postNorm", weight: "attnPostNorm" },
      { op: "norm", weight: "ffnNorm" },
      { op: "gatedFfn", activation: "gelu" },
      { op: "postNorm", weight: "ffnPostNorm" },
    ];
  },
  tokenizerPre: "default",
  tokenizerModel: "llama",
};
