/**
 * Embeddings on WebGPU (Mesa's lavapipe under Deno) on the embedded model: the GPU
 * runner's pooled hidden states against the CPU reference's for each pooling (small
 * batches force several chunks, and mean's device-side sum over them); and through the
 * engine, an embedding made while a generation runs leaves that generation's greedy
 * tokens as they are alone, and gives its slot and KV pages back.
 */
import assert from "node:assert/strict";
import { loadEngine } from "../../src/engine/engine.ts";
import { openGGUF } from "../../src/gguf/reader.ts";
import { CpuRunner } from "../../src/model/cpu-runner.ts";
import { GpuRunner } from "../../src/model/gpu-runner.ts";
import type { Pooling } from "../../src/model/runner.ts";
import { DEFAULT_MODEL_PATH } from "../../src/cli/default-model.ts";
import { tokenizerFromMetadata } from "../../src/tokenizer/index.ts";
import { cosine } from "../node/reference/compare.ts";

const INPUTS = ["The meaning of life is", "A fortune cookie says: you will find your way home", "Hi"];
const POOLINGS: readonly Pooling[] = ["mean", "cls", "last"];


Deno.test("embeddings: the WebGPU runner's pooled states match the CPU reference's (cosine ≥ 0.9999)", async () => {
  const file = await openGGUF(DEFAULT_MODEL_PATH);
  const sizes = { maxSlots: 1, maxBatchTokens: 5, contextLength: 64 };
  const gpu = await GpuRunner.load(file, { ...sizes, gpu: navigator.gpu });
  const cpu = await CpuRunner.load(file, sizes);
  try {
    const tokenizer = tokenizerFromMetadata(file.metadata);
    const pages = [0, 1];
    for (const pooling of POOLINGS) {
      for (const text of INPUTS) {
        const tokens = tokenizer.encode(text);
        const g = await gpu.embed(0, tokens, pages, pooling);
        const c = await cpu.embed(0, tokens, pages, pooling);
        const cos = cosine(g, c);
        console.log(`${pooling} "${text}" (${tokens.length} tokens): cosine ${cos.toFixed(7)}`);
        assert.equal(g.length, gpu.config.nEmbd);
        assert.ok(cos >= 0.9999, `${pooling} "${text}": cosine ${cos}`);
      }
    }
  } finally {
    await gpu.dispose();
    await file.close();
  }
});

Deno.test("embeddings: an embedding during a generation leaves its tokens unchanged and gives slot and pages back", async () => {
  const engine = await loadEngine(DEFAULT_MODEL_PATH, { backend: "webgpu", webgpu: "deno", maxSequences: 2 });
  try {
    const options = { temperature: 0, maxTokens: 24, ignoreEos: true, lookahead: 2 };
    const alone = await engine.generate("Once upon a time", options).result;
    const alongside = (await engine.embed(INPUTS[0]!)).embeddings[0]!;

    const stream = engine.generate("Once upon a time", options);
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next(); // the generation is running: its first chunk is out
    const during = await engine.embed(INPUTS[0]!);
    const rest = await stream.result;
    assert.deepEqual(rest.tokens, alone.tokens);
    assert.ok(cosine(during.embeddings[0]!, alongside) >= 0.99999);
    assert.equal(engine.kvStats().usedPages, 0);
    assert.equal(engine.stats().freeSlots, 2);
  } finally {
    await engine.dispose();
  }
});
