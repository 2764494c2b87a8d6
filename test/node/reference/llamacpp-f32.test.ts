/**
 * The CPU reference against llama.cpp on F32 synthetic models of each architecture: the
 * same weights, no quantization anywhere, an F32 KV cache on llama.cpp's side. What is left
 * is rounding (llama.cpp sums in f32, we sum in f64), so logits must agree to 1e-3 and
 * greedy decoding must pick the same tokens.
 */
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { ReferenceModel } from "../../../src/model/reference.ts";
import { SYNTHETIC_ARCHS } from "../../../src/model/synthetic.ts";
import { syntheticModelPath } from "../support/fixtures.ts";
import { loadLlamaCppModel } from "../support/llamacpp.ts";
import { createComparisonContext, llamaCppLogitsByToken, maxAbsDiff, randomTokens, top1Probability } from "./compare.ts";

const PROMPT_LENGTH = 80;
const GREEDY_TOKENS = 32;

describe.each(SYNTHETIC_ARCHS)("%s F32: CPU reference vs llama.cpp", (arch) => {
  let ours: ReferenceModel;
  let llamaModel: LlamaModel;
  let context: LlamaContext;
  let prompt: number[];

  beforeAll(async () => {
    const path = await syntheticModelPath(arch, "F32");
    const file = await openGGUF(path);
    try {
      ours = await ReferenceModel.load(file);
    } finally {
      await file.close();
    }
    llamaModel = await loadLlamaCppModel(path);
    context = await createComparisonContext(llamaModel, ours.config.contextLength);
    const bos = llamaModel.tokens.bos;
    if (bos === null) throw new Error("synthetic model has no BOS token");
    prompt = [bos, ...randomTokens(PROMPT_LENGTH - 1, ours.config.vocabSize, 7)];
  });

  afterAll(async () => {
    await context?.dispose();
    await llamaModel?.dispose();
  });

  it(`full-vocabulary logits within 1e-3 at each of ${PROMPT_LENGTH} positions`, async () => {
    const expected = await llamaCppLogitsByToken(context, prompt, ours.config.vocabSize);
    const actual = ours.forward(prompt, ours.createCache(), { allLogits: true });
    expect(actual).toHaveLength(prompt.length);
    const diffs = actual.map((logits, i) => maxAbsDiff(logits, expected[i]!));
    const worst = Math.max(...diffs);
    const meanTop1 = expected.reduce((s, l) => s + top1Probability(l), 0) / expected.length;
    console.log(
      `[${arch} F32] max |ours - llama.cpp| over ${prompt.length} positions x ${ours.config.vocabSize} logits: ` +
        `${worst.toExponential(3)} (worst at position ${diffs.indexOf(worst)}); mean top-1 probability ${meanTop1.toFixed(3)}`,
    );
    expect(worst).toBeLessThanOrEqual(1e-3);
  });

  it(`${GREEDY_TOKENS} greedy tokens identical`, async () => {
    const sequence = context.getSequence();
    const theirs: number[] = [];
    try {
      for await (const token of sequence.evaluate(prompt as Token[], { temperature: 0 })) {
        theirs.push(token);
        if (theirs.length === GREEDY_TOKENS) break;
      }
    } finally {
      sequence.dispose();
    }
    const mine = ours.greedy(prompt, GREEDY_TOKENS);
    console.log(`[${arch} F32] greedy: ${mine.join(" ")} (${new Set(mine).size} distinct)`);
    expect(mine).toEqual(theirs);
  });
});
