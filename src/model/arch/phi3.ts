/**
 * phi3 (Phi-3/3.5-mini, Phi-4-mini; llama.cpp's src/models/phi3.cpp): llama's layer with
 * NeoX RoPE, Q, K and V in one `attn_qkv` matrix and the gate and up projections in one
 * `ffn_up` (gate rows first), each read as row ranges in place. LongRoPE's
 * `rope_factors_long`/`_short` and `rope.scaling.attn_factor` come through the config
 * (config.ts), partial rotary through `rope.dimension_count` (Phi-4-mini rotates 96 of 128).
 *
 * `attention.sliding_window`, which some phi3 files carry, is ignored as llama.cpp ignores
 * it (llama_model_phi3::load_arch_hparams sets n_swa = 0: "Phi SWA is currently disabled").
 */
import { type ArchitectureDef, kvDim, type LayerTensorDef, llamaLikeLayer, matrix, qDim, vector } from "./types.ts";
import type { ModelConfig } from "../config.ts";

const embd = (c: ModelConfig) => c.nEmbd;
const ff = (c: ModelConfig) => c.nFf;

/** A phi3 layer's tensors, in the order llama.cpp's converter writes them. */
const PHI3_TENSORS: readonly LayerTensorDef[] = [
  vector("attnNorm", "norm", embd),
  matrix("qkv", embd, (c) => qDim(c) + 2 * kvDim(c)),
  matrix("o", qDim, embd, { writesResidual: true }),
  vector("ffnNorm", "norm", embd),
  matrix("gateUp", embd, (c) => 2 * c.nFf),
  matrix("down", ff, embd, { writesResidual: true }),
];

export const phi3: ArchitectureDef = {
  name: "phi3",
  summary: "pre-norm, SwiGLU, NeoX RoPE (LongRoPE factors, partial rotary), fused attn_qkv and gate+up",
  ropeLayout: "neox",
  ropeBaseDefault: 10000,
  features: () => ({ qkvBias: false, qkNorm: false }),
  layerTensors: PHI3_TENSORS,
  fusedTensors: [
    { key: "qkv", parts: [{ key: "q", rows: qDim }, { key: "k", rows: kvDim }, { key: "v", rows: kvDim }] },
    // ggml_swiglu activates the first half of ffn_up's output and multiplies by the second.
    { key: "gateUp", parts: [{ key: "gate", rows: ff }, { key: "up", rows: ff }] },
  ],
  layerOps: llamaLikeLayer,
  tokenizerPre: "default",
  tokenizerModel: "llama",
};
