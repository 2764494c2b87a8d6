/**
 * Logprobs on WebGPU (shaders/logprobs.wgsl) against the CPU runner's (logprobsOf in
 * src/sampling/sampler.ts), on the embedded model: the same sampled ids, the same top ids,
 * ln p within 1e-3 (the logits themselves differ by about 2e-5 between the two).
 * Run: XDG_RUNTIME_DIR=/tmp deno test -A test/deno/logprobs.test.ts
 */
import assert from "node:assert/strict";
import { openGGUF } from "../../src/gguf/reader.ts";
import { CpuRunner } from "../../src/model/cpu-runner.ts";
import { GpuRunner } from "../../src/model/gpu-runner.ts";
import { slotPages } from "../../src/model/kv-pool.ts";
import type { BatchEntry, ModelRunner, SampledLogprobs, SamplingParams, StepIds } from "../../src/model/runner.ts";
import { GREEDY } from "../../src/sampling/sampler.ts";

const MODEL = new URL("../../models/tiny-fortunes-q8_0.gguf", import.meta.url).pathname;
const SIZES = { maxSlots: 2, maxBatchTokens: 64, contextLength: 128 } as const;
const TOLERANCE = 1e-3;
/** Seeded, with penalties: the logprobs must still be those of the raw logits. */
const SAMPLING: SamplingParams = { ...GREEDY, temperature: 0.9, topK: 20, seed: 7, repeatPenalty: 1.3, penaltyWindow: 16 };
const PROMPT_A = [1, 40, 41, 42, 43, 44, 45];
const PROMPT_B = [1, 300, 301, 302];

/** Two prompts in one step, A with 20 alternatives, B with none; then 3 lookahead tokens. */
async function run(runner: ModelRunner): Promise<StepIds[]> {
  const pages = (slot: number) => slotPages(slot, runner.contextLength, runner.kvPool.pageSize);
  const entries = (pos: [number, number], tokens: [number[], number[]], index: number): BatchEntry[] => [
    { slot: 0, pos: pos[0], tokens: tokens[0], sampling: SAMPLING, sampleIndex: index, pages: pages(0), logprobs: 20 },
    { slot: 1, pos: pos[1], tokens: tokens[1], sampling: SAMPLING, sampleIndex: index, pages: pages(1) },
  ];
  runner.resetSlot(0);
  runner.resetSlot(1);
  const first = await runner.step(entries([0, 0], [PROMPT_A, PROMPT_B], 0), 0);
  const next = await runner.step(entries([PROMPT_A.length, PROMPT_B.length], [[], []], 1), 3);
  // A step that asks for none comes back without logprobs.
  const plain = await runner.step(entries([PROMPT_A.length + 4, PROMPT_B.length + 4], [[], []], 5).map((e) => ({ ...e, logprobs: undefined })), 0);
  return [first, next, plain];
}

function assertClose(gpu: readonly SampledLogprobs[], cpu: readonly SampledLogprobs[], where: string): void {
  assert.equal(gpu.length, cpu.length, `${where}: tokens`);
  gpu.forEach((g, i) => {
    const c = cpu[i]!;
    assert.equal(g.id, c.id, `${where}[${i}]: sampled id`);
    assert.ok(Math.abs(g.logprob - c.logprob) < TOLERANCE, `${where}[${i}]: logprob ${g.logprob} vs ${c.logprob}`);
    assert.deepEqual(g.topIds, c.topIds, `${where}[${i}]: top ids`);
    g.topLogprobs.forEach((lp, j) => {
      assert.ok(Math.abs(lp - c.topLogprobs[j]!) < TOLERANCE, `${where}[${i}] top ${j}: ${lp} vs ${c.topLogprobs[j]}`);
    });
  });
}

Deno.test("logprobs: WebGPU equals the CPU runner (ids, top 20, ln p within 1e-3), lookahead and mixed batches", async () => {
  const file = await openGGUF(MODEL);
  try {
    const cpu = await run(await CpuRunner.load(file, SIZES));
    const gpuRunner = await GpuRunner.load(file, SIZES);
    let gpu: StepIds[];
    try {
      gpu = await run(gpuRunner);
    } finally {
      await gpuRunner.dispose();
    }
    assert.equal(gpuRunner.memory().liveBuffers, 0, "the logprob buffers are destroyed with the runner");
    for (const step of [0, 1, 2]) {
      assert.deepEqual(gpu[step]!.map((ids) => [...ids]), cpu[step]!.map((ids) => [...ids]), `step ${step}: sampled ids`);
    }
    for (const step of [0, 1]) {
      const g = gpu[step]!.logprobs!;
      assert.equal(g[1], undefined, `step ${step}: the entry that asked for none has none`);
      assertClose(g[0]!, cpu[step]!.logprobs![0]!, `step ${step}`);
      assert.equal(g[0]!.length, step === 0 ? 1 : 4, `step ${step}: one record per sampled id`);
    }
    assert.equal(gpu[2]!.logprobs, undefined, "a step where no entry asks has no logprobs");
    // The raw distribution: the top list is sorted, and ln p ≤ 0 with Σ p ≤ 1.
    for (const lp of gpu[1]!.logprobs![0]!) {
      assert.ok(lp.topLogprobs.every((v, j) => v <= 0 && (j === 0 || v <= lp.topLogprobs[j - 1]!)), "sorted, ≤ 0");
      assert.ok(lp.topLogprobs.reduce((s, v) => s + Math.exp(v), 0) <= 1 + 1e-5, "Σ p ≤ 1");
    }
  } finally {
    await file.close();
  }
});
