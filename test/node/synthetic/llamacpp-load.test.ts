/**
 * Every synthetic file the writer makes (tiny preset, each architecture × weight type)
 * loads in llama.cpp, which then reports the shape we wrote and computes finite logits;
 * our own reader derives the config the file was made from; and each tensor is stored in
 * the type the quant mix names.
 */
import { describe, expect, it } from "vitest";
import { ggmlTypeName } from "../../../src/gguf/ggml-type.ts";
import { QUANT_MIXES, type QuantMix, tensorTypeForMix } from "../../../src/gguf/quant-mix.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { type ModelConfig, modelConfigFromGGUF, ROPE_FREQS_TENSOR_NAME } from "../../../src/model/config.ts";
import { SYNTHETIC_ARCHS, syntheticModelConfig, syntheticTensors } from "../../../src/model/synthetic.ts";
import { syntheticModelPath } from "../support/fixtures.ts";
import { loadLlamaCppModel } from "../support/llamacpp.ts";
import { createComparisonContext, llamaCppLogitsByToken } from "../reference/compare.ts";

const QUANTS: readonly QuantMix[] = QUANT_MIXES.filter((q) => q !== "BF16");
const cases = SYNTHETIC_ARCHS.flatMap((arch) => QUANTS.map((quant) => [arch, quant] as const));

/**
 * What a GGUF reader can recover of a synthetic config: floats pass through f32 metadata,
 * and Llama 3 scaling travels as the rope_freqs tensor instead.
 */
function asReadBack(c: ModelConfig): ModelConfig {
  const stored = { ...c, normEps: Math.fround(c.normEps) };
  if (c.rope.scaling.type !== "llama3") return stored;
  return { ...stored, rope: { ...c.rope, scaling: { type: "none" } }, ropeFreqFactors: ROPE_FREQS_TENSOR_NAME };
}

describe("synthetic tiny models", () => {
  it.each(cases)("%s %s: our reader and llama.cpp load it", async (arch, quant) => {
    const path = await syntheticModelPath(arch, quant);
    const expected = syntheticModelConfig(arch, "tiny");

    const file = await openGGUF(path);
    try {
      expect(modelConfigFromGGUF(file)).toEqual(asReadBack(expected));
      const tensors = syntheticTensors(expected, 1);
      expect(file.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
      const types = new Set<string>();
      for (const t of tensors) {
        const want = tensorTypeForMix(quant, t.name, t.shape, expected.nLayers, { tiedEmbeddings: expected.tiedEmbeddings });
        expect(ggmlTypeName(file.tensor(t.name)!.type), t.name).toBe(ggmlTypeName(want));
        types.add(ggmlTypeName(want));
      }
      console.log(`[${arch} ${quant}] ${file.fileSize} bytes, tensor types: ${[...types].join(", ")}`);
    } finally {
      await file.close();
    }

    const model = await loadLlamaCppModel(path);
    try {
      expect(model.trainContextSize).toBe(expected.contextLength);
      expect(model.fileInfo.metadata.general.architecture).toBe(arch);
      expect(model.tokens.bos).not.toBeNull();
      const context = await createComparisonContext(model, 64);
      try {
        const logits = await llamaCppLogitsByToken(context, [model.tokens.bos!, 10, 20, 30], expected.vocabSize);
        expect(logits).toHaveLength(4);
        for (const row of logits) {
          expect(row).toHaveLength(expected.vocabSize);
          expect(row.every(Number.isFinite)).toBe(true);
        }
      } finally {
        await context.dispose();
      }
    } finally {
      await model.dispose();
    }
  });
});
