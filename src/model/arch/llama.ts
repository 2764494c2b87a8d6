/**
 * llama (Llama 2/3, Mistral, SmolLM2 and other llama-shaped files): pre-norm layers,
 * adjacent-pair ("normal") RoPE, SwiGLU feed-forward. Like llama.cpp, it loads Q/K/V
 * biases when the file has them. Llama 3's frequency scaling arrives as `rope_freqs.weight`.
 */
import { type ArchitectureDef, layerTensorName, LLAMA_LIKE_TENSORS, llamaLikeLayer } from "./types.ts";

export const llama: ArchitectureDef = {
  name: "llama",
  summary: "pre-norm, SwiGLU, normal RoPE (optional Q/K/V biases; Llama 3 rope_freqs)",
  ropeLayout: "normal",
  ropeBaseDefault: 10000,
  features: (file) => ({ qkvBias: file.tensor(layerTensorName(0, "qBias")) !== undefined, qkNorm: false }),
  layerTensors: LLAMA_LIKE_TENSORS,
  layerOps: llamaLikeLayer,
  tokenizerPre: "llama-bpe",
};
