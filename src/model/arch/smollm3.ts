/**
 * smollm3 (SmolLM3): llama's layer, but every fourth layer (3, 7, 11, ...) attends without
 * RoPE ("NoPE"). llama.cpp fixes the step at 4 (llama_model_smollm3: n_no_rope_layer_step),
 * with no metadata key for it.
 */
import { type ArchitectureDef, LLAMA_LIKE_TENSORS, llamaLikeLayer, type LayerOp } from "./types.ts";

/** Layers whose index + 1 is a multiple of this skip RoPE. */
export const SMOLLM3_NO_ROPE_LAYER_STEP = 4;

export const smollm3: ArchitectureDef = {
  name: "smollm3",
  summary: "llama's layer, no RoPE on every fourth layer",
  ropeLayout: "normal",
  ropeBaseDefault: 10000,
  features: () => ({ qkvBias: false, qkNorm: false }),
  layerTensors: LLAMA_LIKE_TENSORS,
  layerOps(c, layer): readonly LayerOp[] {
    const ops = llamaLikeLayer(c);
    const useRope = (layer + 1) % SMOLLM3_NO_ROPE_LAYER_STEP !== 0;
    return useRope ? ops : ops.filter((op) => op.op !== "rope");
  },
  tokenizerPre: "llama-bpe",
};
