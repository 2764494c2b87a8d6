/** qwen3 (dense Qwen3): llama's layer with an RMSNorm on each head of Q and K before NeoX RoPE. */
import { type ArchitectureDef, LLAMA_LIKE_TENSORS, llamaLikeLayer } from "./types.ts";

export const qwen3: ArchitectureDef = {
  name: "qwen3",
  summary: "pre-norm, SwiGLU, NeoX RoPE, per-head Q/K RMSNorm",
  ropeLayout: "neox",
  ropeBaseDefault: 10000,
  features: () => ({ qkvBias: false, qkNorm: true }),
  layerTensors: LLAMA_LIKE_TENSORS,
  layerOps: llamaLikeLayer,
  tokenizerPre: "qwen2",
};
