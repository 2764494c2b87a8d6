/**
 * `logprobs` / `topLogprobs` of the library (CPU reference backend) against llama.cpp's
 * `n_probs` on the same file: llama.cpp's softmax of the raw logits after the same tokens
 * (node-llama-cpp's probabilities with every filter off, see llamacpp-logprobs.ts). The
 * WebGPU runner is checked against the reference in test/deno/logprobs.test.ts.
 * F32, where llama.cpp computes the logits as we do (with Q8_0 its CPU matmul quantizes
 * the activations to 8 bits too, and logits move by about 1e-2 for that alone).
 * Sampled at temperature 0.9 with a repetition penalty, so a sampler-adjusted distribution
 * would show: ours must be the model's raw one, like llama.cpp's.
 */
import { fileURLToPath } from "node:url";
import type { LlamaContext, LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, expect, test } from "vitest";
import { type Engine, loadEngine } from "../../../src/engine/engine.ts";
import { createExactContext, loadLlamaCppModel } from "../support/llamacpp.ts";
import { llamaCppLogProbs } from "./llamacpp-logprobs.ts";

const MODEL = fileURLToPath(new URL("../../../models/tiny-fortunes-f32.gguf", import.meta.url));
const TOLERANCE = 1e-3;
const TOP = 5;

let model: LlamaModel;
let context: LlamaContext;
let engine: Engine;

beforeAll(async () => {
  model = await loadLlamaCppModel(MODEL);
  context = await createExactContext(model, 64);
  engine = await loadEngine(MODEL, { backend: "cpu", maxSequences: 1, contextLength: 64 });
});

afterAll(async () => {
  await engine?.dispose();
  await context?.dispose();
  await model?.dispose();
});

test("each token's logprob and its top 5 equal llama.cpp's n_probs within 1e-3", async () => {
  const result = await engine.generate("The meaning of life is", {
    logprobs: true,
    topLogprobs: TOP,
    temperature: 0.9,
    repeatPenalty: 1.3,
    seed: 11,
    maxTokens: 6,
    ignoreEos: true,
  }).result;
  const ours = result.logprobs!;
  expect(ours).toHaveLength(result.tokens.length);
  const ids = [...result.promptTokens, ...result.tokens];
  const theirs = await llamaCppLogProbs(context, ids, engine.config.vocabSize);
  ours.forEach((lp, k) => {
    const row = theirs[result.promptTokens.length - 1 + k]!; // predicts generated token k
    expect(lp.token).toBe(result.tokens[k]);
    expect(Math.abs(lp.logprob - row[lp.token]!)).toBeLessThan(TOLERANCE);
    const topTheirs = [...row.keys()].sort((a, b) => row[b]! - row[a]! || a - b).slice(0, TOP);
    expect(lp.top.map((c) => c.token)).toEqual(topTheirs);
    lp.top.forEach((c) => expect(Math.abs(c.logprob - row[c.token]!)).toBeLessThan(TOLERANCE));
    expect(lp.top.every((c) => new TextDecoder().decode(new Uint8Array(c.bytes)) === c.text)).toBe(true);
  });
});
