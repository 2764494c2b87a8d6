/** qwen2 (Qwen2, Qwen2.5): llama's layer with Q/K/V biases and NeoX-style (half-split) RoPE. */
import { type ArchitectureDef, LLAMA_LIKE_TENSORS, llamaLikeLayer } from "./types.ts";

export const qwen2: ArchitectureDef = {
  name: "qwen2",
  summary: "pre-norm, SwiGLU, NeoX RoPE, Q/K/V biases",
  ropeLayout: "neox",
  ropeBaseDefault: 10000,
  features: () => ({ qkvBias: true, qkNorm: false }),
  layerTensors: LLAMA_LIKE_TENSORS,
  layerOps: llamaLikeLayer,
  tokenizerPre: "qwen2",
};
