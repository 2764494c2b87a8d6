/**
 * granite (IBM Granite 3.x dense; llama.cpp's src/models/granite.cpp): llama's layer and
 * tensors, normal RoPE, with four constants from the metadata: the token embeddings are
 * multiplied by `embedding_scale`, q·k by `attention.scale` (in place of 1/√headDim), each
 * block's output by `residual_scale` before it joins the residual stream, and the logits
 * divided by `logit_scale` (required, as llama.cpp requires it). The others, when absent,
 * leave the llama behaviour, as llama.cpp treats a 0 (its default) as "not set".
 */
import { ModelConfigError } from "../../errors.ts";
import { getNumber, hasKey, type Metadata } from "../../gguf/metadata.ts";
import { type ArchitectureDef, type ArchitectureScalars, LLAMA_LIKE_TENSORS, llamaLikeLayer } from "./types.ts";

/** A positive finite number at `key`; undefined when absent and `required` is false. */
function scale(m: Metadata, key: string, required = false): number | undefined {
  if (!required && !hasKey(m, key)) return undefined;
  const n = getNumber(m, key);
  if (!(Number.isFinite(n) && n > 0)) throw new ModelConfigError(key, `expected a positive number, found ${n}`);
  return n;
}

/** granite's scales, each only when the file sets it (logit_scale always). */
function graniteScalars(m: Metadata, key: (suffix: string) => string): ArchitectureScalars {
  const out: { -readonly [K in keyof ArchitectureScalars]: ArchitectureScalars[K] } = { logitScale: scale(m, key("logit_scale"), true)! };
  const embeddingScale = scale(m, key("embedding_scale"));
  const attentionScale = scale(m, key("attention.scale"));
  const residualScale = scale(m, key("residual_scale"));
  if (embeddingScale !== undefined) out.embeddingScale = embeddingScale;
  if (attentionScale !== undefined) out.attentionScale = attentionScale;
  if (residualScale !== undefined) out.residualScale = residualScale;
  return out;
}

export const granite: ArchitectureDef = {
  name: "granite",
  summary: "llama's layer with embedding, attention, residual and logit scales",
  ropeLayout: "normal",
  ropeBaseDefault: 10000,
  features: () => ({ qkvBias: false, qkNorm: false }),
  scalars: (m, key) => graniteScalars(m, key),
  layerTensors: LLAMA_LIKE_TENSORS,
  layerOps: llamaLikeLayer,
  tokenizerPre: "refact",
};
