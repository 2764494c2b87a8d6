/**
 * gemma3 (Gemma 3, text), as llama.cpp's src/models/gemma3.cpp: gemma2's layer (√nEmbd
 * embeddings, pre- and post-norms, GeGLU, NeoX RoPE) with an RMSNorm on each head of Q and
 * K before RoPE, and no attention soft-cap. With `attention.sliding_window` set, five of
 * every six layers (`attention.sliding_window_pattern`, default 6) slide, and those rotate
 * by their own RoPE base (`rope.freq_base_swa`, default 10,000) with no frequency scaling,
 * while the global layers use the file's base and scaling (linear 8 in the 4B and larger).
 * The final logit soft-cap is read only when the file has one (Gemma 3's files do not).
 *
 * The attention scale is 1/√headDim, except for the 27B (62 layers): 1/√(nEmbd/nHeads).
 */
import { getNumber, hasKey } from "../../gguf/metadata.ts";
import { positiveScalar, slidingLayers, slidingWindow } from "./gemma-common.ts";
import { GEMMA_TENSORS } from "./gemma2.ts";
import { type ArchitectureDef, type ArchitectureScalars, type LayerOp, type LayerTensorDef, vector } from "./types.ts";

const head = (c: { headDim: number }) => c.headDim;

/** gemma2's tensors plus the per-head Q/K norms (after the attention output, as llama.cpp lists them). */
const GEMMA3_TENSORS: readonly LayerTensorDef[] = [
  ...GEMMA_TENSORS.slice(0, GEMMA_TENSORS.findIndex((t) => t.key === "o") + 1),
  vector("qNorm", "norm", head),
  vector("kNorm", "norm", head),
  ...GEMMA_TENSORS.slice(GEMMA_TENSORS.findIndex((t) => t.key === "o") + 1),
];

/** llama.cpp's gemma3 n_layer of the 27B, whose attention scale differs. */
const GEMMA3_27B_LAYERS = 62;
/** llama.cpp's rope_freq_base_train_swa when `rope.freq_base_swa` is absent. */
const SLIDING_ROPE_BASE_DEFAULT = 10000;

export const gemma3: ArchitectureDef = {
  name: "gemma3",
  summary: "pre- and post-norms, GeGLU, per-head Q/K RMSNorm, NeoX RoPE, √n_embd embeddings, sliding window on 5 of 6 layers with their own RoPE base",
  ropeLayout: "neox",
  ropeBaseDefault: 10000,
  features: () => ({ qkvBias: false, qkNorm: true }),
  scalars: (m, key, shape) => {
    const scalars: ArchitectureScalars = {
      // llama.cpp scales by sqrtf(n_embd): the f32 value.
      embeddingScale: Math.fround(Math.sqrt(shape.nEmbd)),
      attentionScale: 1 / Math.sqrt(shape.nLayers === GEMMA3_27B_LAYERS ? shape.nEmbd / shape.nHeads : shape.headDim),
      ...(hasKey(m, key("final_logit_softcapping")) ? { finalLogitSoftcap: positiveScalar(m, key("final_logit_softcapping"), 30) } : {}),
    };
    // As llama.cpp: no sliding window (nor second RoPE base) unless the file sets a positive one.
    if (getNumber(m, key("attention.sliding_window"), 0) <= 0) return scalars;
    return {
      ...scalars,
      slidingWindow: slidingWindow(m, key, 1),
      slidingLayers: slidingLayers(m, key, shape.nLayers, 6),
      slidingRopeBase: positiveScalar(m, key("rope.freq_base_swa"), SLIDING_ROPE_BASE_DEFAULT),
    };
  },
  layerTensors: GEMMA3_TENSORS,
  layerOps(c, layer): readonly LayerOp[] {
    const window = c.slidingLayers?.[layer] ? c.slidingWindow : undefined;
    return [
      { op: "norm", weight: "attnNorm" },
      { op: "qkv", bias: false },
      { op: "qkNorm", over: "head" },
      window !== undefined ? { op: "rope", frequencies: "sliding" } : { op: "rope" },
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
