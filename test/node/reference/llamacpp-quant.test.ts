/**
 * The CPU reference against llama.cpp on quantized synthetic models. Both read the same
 * quantized weights, but llama.cpp also quantizes the activations (to Q8_0 / Q8_K) for its
 * quantized dot products while we dequantize the weights to f32, so the distributions
 * differ slightly: mean KL(llama.cpp || ours) must stay under 5e-3 nats and the top token
 * must agree at 98% of the positions, teacher-forced over 256 positions.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { QuantMix } from "../../../src/gguf/quant-mix.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { ReferenceModel } from "../../../src/model/reference.ts";
import { SYNTHETIC_ARCHS } from "../../../src/model/synthetic.ts";
import { syntheticModelPath } from "../support/fixtures.ts";
import { loadLlamaCppModel } from "../support/llamacpp.ts";
import { createComparisonContext, klDivergence, llamaCppLogitsByToken, randomTokens, top1 } from "./compare.ts";

const QUANTS: readonly QuantMix[] = ["Q8_0", "Q4_0", "Q4_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"];
const POSITIONS = 256;
/** Families added after the first three run the quants the checks name (CI time). */
const FAMILY_QUANTS: readonly QuantMix[] = ["Q8_0", "Q4_K_M", "IQ4_XS"];
const FIRST_ARCHS: readonly string[] = ["llama", "qwen2", "qwen3"];
const cases = SYNTHETIC_ARCHS.flatMap((arch) => (FIRST_ARCHS.includes(arch) ? QUANTS : FAMILY_QUANTS).map((quant) => [arch, quant] as const));
const summary: string[] = [];

afterAll(() => {
  console.log(`KL(llama.cpp || ours) and top-1 agreement over ${POSITIONS} positions:\n${summary.join("\n")}`);
});

describe("quantized models: CPU reference vs llama.cpp", () => {
  it.each(cases)("%s %s", async (arch, quant) => {
    const path = await syntheticModelPath(arch, quant);
    const file = await openGGUF(path);
    let ours: ReferenceModel;
    try {
      ours = await ReferenceModel.load(file);
    } finally {
      await file.close();
    }
    const llamaModel = await loadLlamaCppModel(path);
    try {
      const context = await createComparisonContext(llamaModel, ours.config.contextLength);
      try {
        const bos = llamaModel.tokens.bos;
        if (bos === null) throw new Error("synthetic model has no BOS token");
        const ids = [bos, ...randomTokens(POSITIONS - 1, ours.config.vocabSize, 11)];
        const theirs = await llamaCppLogitsByToken(context, ids, ours.config.vocabSize);
        const mine = ours.forward(ids, ours.createCache(), { allLogits: true });
        let kl = 0;
        let agree = 0;
        mine.forEach((logits, i) => {
          kl += klDivergence(theirs[i]!, logits);
          if (top1(theirs[i]!) === top1(logits)) agree++;
        });
        const meanKl = kl / ids.length;
        const agreement = agree / ids.length;
        const line = `[${arch} ${quant}] mean KL ${meanKl.toExponential(3)} nats, top-1 agreement ${(100 * agreement).toFixed(2)}%`;
        console.log(line);
        summary.push(line);
        expect(meanKl).toBeLessThanOrEqual(5e-3);
        expect(agreement).toBeGreaterThanOrEqual(0.98);
      } finally {
        await context.dispose();
      }
    } finally {
      await llamaModel.dispose();
    }
  });
});
