/**
 * Constrained decoding's token mask on WebGPU (shaders/token-mask.wgsl) against the CPU
 * (applyTokenMask in src/model/cpu-runner.ts): the kernel alone on a vocabulary that is not
 * a multiple of 32, and the WebGPU runner against the CPU runner on the embedded model,
 * masked and unmasked rows mixed in one step, with logprobs and lookahead.
 * Run: XDG_RUNTIME_DIR=/tmp deno test -A test/deno/token-mask.test.ts
 */
import assert from "node:assert/strict";
import { openGGUF } from "../../src/gguf/reader.ts";
import { createGpuContext } from "../../src/gpu/device.ts";
import { DeviceTokenMask, tokenMaskWords } from "../../src/gpu/kernels/token-mask.ts";
import { applyTokenMask, CpuRunner } from "../../src/model/cpu-runner.ts";
import { GpuRunner } from "../../src/model/gpu-runner.ts";
import { slotPages } from "../../src/model/kv-pool.ts";
import type { BatchEntry, ModelRunner, SamplingParams, StepIds } from "../../src/model/runner.ts";
import { GREEDY } from "../../src/sampling/sampler.ts";

const MODEL = new URL("../../models/tiny-fortunes-q8_0.gguf", import.meta.url).pathname;
const SIZES = { maxSlots: 3, maxBatchTokens: 64, contextLength: 128 } as const;

/** A mask allowing exactly the tokens `allowed(i)` says, for a vocabulary of `vocab`. */
function maskOf(vocab: number, allowed: (id: number) => boolean): Uint32Array {
  const mask = new Uint32Array(tokenMaskWords(vocab));
  for (let i = 0; i < vocab; i++) if (allowed(i)) mask[i >> 5]! |= 1 << (i & 31);
  return mask;
}

function isAllowed(mask: Uint32Array, id: number): boolean {
  return ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;
}

Deno.test("token-mask kernel: -inf exactly where the CPU's applyTokenMask puts it, masked rows only (vocab 70, rows 0 and 2 of 3)", async () => {
  const vocab = 70; // 3 words, the last one partial: bits past the vocabulary write nothing
  const rows = 3;
  const ctx = await createGpuContext();
  try {
    const mask = new DeviceTokenMask(ctx, { vocabSize: vocab, maxRows: rows });
    await mask.prepare();
    const logits = Float32Array.from({ length: rows * vocab }, (_, i) => Math.sin(i) * 5);
    const masks = [maskOf(vocab, (i) => i % 3 === 0), undefined, maskOf(vocab, (i) => i === 69 || i < 33)];
    const a = ctx.allocator;
    const buffer = a.createBuffer({ label: "test logits", size: logits.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    a.writeBuffer(buffer, 0, logits);
    const count = mask.upload(masks);
    assert.equal(count, 2);
    const encoder = ctx.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    mask.record(pass, buffer, count);
    pass.end();
    ctx.device.queue.submit([encoder.finish()]);
    const gpu = new Float32Array(await a.readBuffer(buffer, 0, logits.byteLength));
    ctx.check();
    const expected = logits.slice();
    masks.forEach((m, r) => m && applyTokenMask(expected.subarray(r * vocab, (r + 1) * vocab), m));
    assert.deepEqual([...gpu], [...expected]);
    assert.ok(gpu.some((v) => v === -Infinity), "some logits are masked");
    assert.throws(() => mask.upload([new Uint32Array(2)]), /a token mask of 2 words; a vocabulary of 70 tokens needs 3/);
    a.destroy(buffer);
    mask.destroy();
  } finally {
    await ctx.destroy();
  }
});

/** Seeded, with a penalty: sampling must still stay inside the mask. */
const SAMPLING: SamplingParams = { ...GREEDY, temperature: 1, seed: 11, repeatPenalty: 1.3, penaltyWindow: 16 };
const PROMPTS = [[1, 40, 41, 42, 43], [1, 300, 301, 302], [1, 500, 501]];
/** The one token slot 2 may take: a greedy draw must come back as exactly this id. */
const FORCED = 123;

/**
 * Three slots; slots 0 and 2 masked (rows 0 and 2: the kernel must map masked rows to their
 * logit rows), slot 1 free. Step 1 samples after the prompts, step 2 decodes with new masks
 * and 3 lookahead tokens (the mask bounds only each entry's first sample).
 */
async function run(runner: ModelRunner, masked: boolean): Promise<StepIds[]> {
  const vocab = runner.config.vocabSize;
  const sparse = masked ? maskOf(vocab, (i) => i % 7 === 3) : undefined;
  const forced = masked ? maskOf(vocab, (i) => i === FORCED) : undefined;
  const entries = (step: number): BatchEntry[] =>
    [0, 1, 2].map((slot) => ({
      slot,
      pos: step === 0 ? 0 : PROMPTS[slot]!.length,
      tokens: step === 0 ? PROMPTS[slot]! : [],
      sampling: slot === 2 ? GREEDY : { ...SAMPLING, seed: SAMPLING.seed + slot },
      sampleIndex: step,
      pages: slotPages(slot, runner.contextLength, runner.kvPool.pageSize),
      ...(slot === 0 ? { logprobs: 5 } : {}),
      ...(slot === 0 && sparse ? { tokenMask: sparse } : {}),
      ...(slot === 2 && forced ? { tokenMask: forced } : {}),
    }));
  for (const slot of [0, 1, 2]) runner.resetSlot(slot);
  return [await runner.step(entries(0), 0), await runner.step(entries(1), 3)];
}

const ids = (steps: readonly StepIds[]) => steps.map((s) => s.map((row) => [...row]));

Deno.test("token mask: the WebGPU runner samples as the CPU runner does with masks (mixed rows, logprobs raw, lookahead); unmasked rows unchanged", async () => {
  const file = await openGGUF(MODEL);
  try {
    const cpuRunner = await CpuRunner.load(file, SIZES);
    const cpu = await run(cpuRunner, true);
    const gpuRunner = await GpuRunner.load(file, SIZES);
    let gpu: StepIds[];
    let gpuFree: StepIds[];
    try {
      assert.equal(gpuRunner.masksTokens, true);
      gpuFree = await run(gpuRunner, false);
      gpu = await run(gpuRunner, true);
    } finally {
      await gpuRunner.dispose();
    }
    assert.equal(gpuRunner.memory().liveBuffers, 0, "the mask buffer is destroyed with the runner");
    assert.deepEqual(ids(gpu), ids(cpu), "the same ids as the CPU runner");
    for (const step of [0, 1]) {
      assert.equal(gpu[step]![2]![0], FORCED, `step ${step}: the only allowed token`);
      assert.equal(gpu[step]![0]![0]! % 7, 3, `step ${step}: slot 0's first sample is inside its mask`);
      // Slot 1 has no mask: its tokens are those of a run where nobody has one.
      assert.deepEqual([...gpu[step]![1]!], [...gpuFree[step]![1]!], `step ${step}: the unmasked row`);
    }
    assert.notDeepEqual(ids(gpu)[0]![2], ids(gpuFree)[0]![2], "the mask changed the greedy choice");
    // Logprobs are of the raw logits: equal to the unmasked run's where the ids agree, and the
    // top alternatives may lie outside the mask.
    const masked = gpu[0]!.logprobs![0]![0]!;
    const free = gpuFree[0]!.logprobs![0]![0]!;
    assert.deepEqual(masked.topIds, free.topIds, "top ids of the raw distribution");
    assert.ok(masked.topIds.some((id) => !isAllowed(maskOf(cpuRunner.config.vocabSize, (i) => i % 7 === 3), id)), "top ids outside the mask");
    const cpuLp = cpu[0]!.logprobs![0]![0]!;
    assert.ok(Math.abs(masked.logprob - cpuLp.logprob) < 1e-3, `logprob ${masked.logprob} vs CPU ${cpuLp.logprob}`);
    await cpuRunner.dispose();
  } finally {
    await file.close();
  }
});
