/**
 * The paged KV pool of the WebGPU runner, against the CPU runner (its pool is the plain
 * TypeScript ReferenceKvPool) on the same page tables: scrambled, shared between two
 * sequences, copied (copy-on-write), and spread over several storage bindings.
 * Run: deno test -A test/deno/kv-pool-paged.test.ts   (lavapipe here; any WebGPU adapter works)
 */
import assert from "node:assert/strict";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { CpuRunner } from "../../src/model/cpu-runner.ts";
import type { BatchEntry, ModelRunner, SamplingParams } from "../../src/model/runner.ts";
import { type GGUFFile, openGGUF } from "../../src/gguf/reader.ts";
import { GpuError, InvalidArgumentError } from "../../src/errors.ts";
import { createGpuContext } from "../../src/gpu/device.ts";
import { DEFAULT_KV_BUDGET_BYTES, GpuRunner, type GpuRunnerOptions, planKvPool } from "../../src/model/gpu-runner.ts";
import { kvPageBytes, planKvLayout } from "../../src/model/gpu-forward.ts";
import { type ModelConfig, modelConfigFromGGUF } from "../../src/model/config.ts";

const PAGE = 16;
const PAGES = 40;
/** f32 K and V of the tiny models' 2 layers, 128 values per position. */
const PAGE_BYTES = 2 * 2 * PAGE * 128 * 4;
const SIZES = { maxSlots: 4, maxBatchTokens: 48, contextLength: 160, pageSize: PAGE, kvCacheBytes: PAGES * PAGE_BYTES } as const;
const SAMPLING: SamplingParams = {
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.02,
  repeatPenalty: 1.3,
  penaltyWindow: 64,
  presencePenalty: 0.2,
  frequencyPenalty: 0.1,
  seed: 99,
};

/** Deterministic token ids below the tiny vocabulary of 1000. */
function tokens(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return 1 + (s % 998);
  });
}

let file: Promise<GGUFFile> | undefined;
function model(): Promise<GGUFFile> {
  file ??= syntheticModelPath("llama", "F32").then((path) => openGGUF(path));
  return file;
}

async function withGpu<T>(options: Partial<GpuRunnerOptions>, body: (r: GpuRunner) => Promise<T>): Promise<T> {
  const runner = await GpuRunner.load(await model(), { ...SIZES, kvCacheType: "f32", ...options });
  try {
    return await body(runner);
  } finally {
    await runner.dispose();
    assert.equal(runner.memory().liveBytes, 0, "live bytes after dispose");
  }
}

function maxDiff(got: readonly Float32Array[], want: readonly Float32Array[]): number {
  assert.equal(got.length, want.length);
  let most = 0;
  got.forEach((g, i) => g.forEach((v, j) => (most = Math.max(most, Math.abs(v - want[i]![j]!)))));
  return most;
}

/**
 * Two sequences on scrambled pages that share the first full page: A (slot 2) is prefilled
 * whole; B (slot 0) reuses A's first 16 positions (its penalty history seeded with them)
 * and prefills only the rest beside A's first decode. Then both decode together with
 * lookahead 3. Returns every sampled id, per sequence.
 */
async function sharedPrefixRun(runner: ModelRunner): Promise<number[][]> {
  const a = tokens(27, 1);
  const b = [...a.slice(0, PAGE), ...tokens(9, 2)];
  const pagesA = [39, 5, 22, 31, 7, 18, 12, 2, 27, 35];
  const pagesB = [39, 14, 0, 33, 25, 9, 20, 37, 11, 3];
  runner.resetSlot(2);
  runner.resetSlot(0, b.slice(0, PAGE));
  const out: number[][] = [[], []];
  const [first] = await runner.step([{ slot: 2, pos: 0, tokens: a, sampling: SAMPLING, sampleIndex: 0, pages: pagesA }], 0);
  out[0]!.push(...first!);
  const mixed = await runner.step(
    [
      { slot: 0, pos: PAGE, tokens: b.slice(PAGE), sampling: SAMPLING, sampleIndex: 0, pages: pagesB },
      { slot: 2, pos: a.length, tokens: [], sampling: SAMPLING, sampleIndex: 1, pages: pagesA },
    ],
    0,
  );
  out[1]!.push(...mixed[0]!);
  out[0]!.push(...mixed[1]!);
  const pos = [a.length + 1, b.length];
  for (let round = 0; round < 6; round++) {
    const ids = await runner.step(
      [
        { slot: 2, pos: pos[0]!, tokens: [], sampling: SAMPLING, sampleIndex: out[0]!.length, pages: pagesA },
        { slot: 0, pos: pos[1]!, tokens: [], sampling: SAMPLING, sampleIndex: out[1]!.length, pages: pagesB },
      ],
      3,
    );
    ids.forEach((got, i) => {
      out[i]!.push(...got);
      pos[i]! += got.length;
    });
  }
  return out;
}

Deno.test("scrambled page tables, a shared prefix page, seeded history: GPU sampled ids equal the CPU runner's", async () => {
  const cpu = await CpuRunner.load(await model(), SIZES);
  const want = await sharedPrefixRun(cpu);
  await cpu.dispose();
  assert.equal(want[0]!.length, 2 + 6 * 4);
  assert.ok(new Set(want.flat()).size > 8, `the reference is not degenerate: ${want.flat().join(" ")}`);
  const got = await withGpu({}, (gpu) => sharedPrefixRun(gpu));
  assert.deepEqual(got, want);
});

/** Logits of `prompt` fed in two calls over `pages` (slot 1). */
async function logitsOver(runner: ModelRunner, prompt: readonly number[], pages: readonly number[]): Promise<Float32Array[]> {
  runner.resetSlot(1);
  return [...(await runner.logits(1, 0, prompt.slice(0, 21), pages)), ...(await runner.logits(1, 21, prompt.slice(21), pages))];
}

Deno.test("a pool spread over 3 storage bindings (small binding limit) gives the logits of one binding and of the CPU", async () => {
  const prompt = tokens(70, 3);
  const pages = [38, 17, 1, 30, 9]; // bindings of 16 pages: 2, 1, 0, 1, 0
  const cpu = await CpuRunner.load(await model(), SIZES);
  const want = await cpu.logits(1, 0, prompt, pages);
  await cpu.dispose();
  const one = await withGpu({}, async (gpu) => {
    assert.equal(gpu.kvLayout.bindings, 1);
    return logitsOver(gpu, prompt, pages);
  });
  // 16 pages of 8 KiB per binding: everything else fits 128 KiB too.
  const three = await withGpu({ context: { limitOverrides: { maxStorageBufferBindingSize: 128 * 1024 } } }, async (gpu) => {
    assert.deepEqual(gpu.kvLayout, { pageSize: PAGE, rowsPerBinding: 16 * PAGE, bindings: 3 });
    return logitsOver(gpu, prompt, pages);
  });
  assert.ok(maxDiff(one, want) <= 1e-3, `one binding against the CPU: ${maxDiff(one, want)}`);
  assert.ok(maxDiff(three, one) <= 1e-6, `three bindings against one: ${maxDiff(three, one)}`);
});

Deno.test("copyPages: a fork copies the shared partial page, and both continuations equal fresh runs", async () => {
  const prefix = tokens(20, 4); // page 6 full, page 11 holds positions 16..19
  const tailA = tokens(15, 5);
  const tailB = tokens(15, 6);
  await withGpu({}, async (gpu) => {
    const fresh = async (tail: number[]) => (await logitsOver(gpu, [...prefix, ...tail], [0, 1, 2])).slice(prefix.length);
    const wantA = await fresh(tailA);
    const wantB = await fresh(tailB);
    gpu.resetSlot(2);
    const [none] = await gpu.step([{ slot: 2, pos: 0, tokens: prefix, sampleIndex: 0, pages: [6, 11] }], 0);
    assert.equal(none!.length, 0);
    gpu.copyPages([{ from: 11, to: 25 }]);
    gpu.resetSlot(3, prefix);
    // B writes its positions 20.. into its copy; A then writes into the original.
    const gotB = await gpu.logits(3, prefix.length, tailB, [6, 25, 13]);
    const gotA = await gpu.logits(2, prefix.length, tailA, [6, 11, 30]);
    assert.ok(maxDiff(gotA, wantA) <= 1e-5, `A after the fork: ${maxDiff(gotA, wantA)}`);
    assert.ok(maxDiff(gotB, wantB) <= 1e-5, `B on its copy: ${maxDiff(gotB, wantB)}`);
    assert.throws(() => gpu.copyPages([{ from: 3, to: PAGES }]), InvalidArgumentError);
  });
});

Deno.test("page tables that do not cover the positions, leave the pool or collide are refused before anything runs", async () => {
  await withGpu({}, async (gpu) => {
    const entry = (over: Partial<BatchEntry>): BatchEntry => ({ slot: 0, pos: 0, tokens: [1, 2, 3], sampleIndex: 0, pages: [4], ...over });
    await assert.rejects(gpu.step([entry({ pos: 15 })], 0), (e: unknown) => e instanceof InvalidArgumentError && /position 17 needs 2/.test(e.message));
    await assert.rejects(gpu.step([entry({ pages: [PAGES] })], 0), /outside the pool \[0, 40\)/);
    await assert.rejects(gpu.step([entry({}), entry({ slot: 1, pos: 3 })], 0), /page 4 is also written by batch\[0\]/);
    await assert.rejects(gpu.logits(0, 0, [1], []), /page table|pages hold 0/);
    // Sharing a page that neither writes is fine.
    const shared = await gpu.step([entry({ pos: 16, pages: [4, 5] }), entry({ slot: 1, pos: 16, pages: [4, 6] })], 0);
    assert.deepEqual(shared.map((ids) => ids.length), [0, 0]);
  });
});

/** Shapes of the real presets (make-model), as the pool planner sees them. */
function preset(base: ModelConfig, shape: Pick<ModelConfig, "nLayers" | "nKvHeads" | "headDim" | "contextLength" | "qkNorm">): ModelConfig {
  return { ...base, ...shape };
}

Deno.test("default pool: maxSlots full contexts within 1 GiB and the device's bindings, at least one context; kvCacheBytes buys pages", async () => {
  const base = modelConfigFromGGUF(await model());
  const ctx = await createGpuContext();
  try {
    const llama1b = preset(base, { nLayers: 16, nKvHeads: 8, headDim: 64, contextLength: 131072, qkNorm: false });
    const qwen3 = preset(base, { nLayers: 28, nKvHeads: 8, headDim: 128, contextLength: 40960, qkNorm: true });
    const request = { type: "auto", maxSlots: 4, contextLength: 8192, pageSize: 32 } as const;
    // Llama 3.2 1B: 4 × 8192 positions of 32 KiB in f16 is exactly 1 GiB.
    const l = planKvPool(ctx, llama1b, request);
    assert.deepEqual(l, { type: "f16", pageSize: 32, pageCount: 1024 });
    planKvLayout(ctx, llama1b, 32, l.pageCount, l.type); // fits the device's bindings
    // Qwen3 0.6B: 112 KiB per position in f16; 1 GiB holds 9362 positions, over one context.
    const q = planKvPool(ctx, qwen3, request);
    assert.equal(q.type, "f16");
    assert.equal(q.pageCount, Math.floor(DEFAULT_KV_BUDGET_BYTES / (2 * 28 * kvPageBytes(qwen3, 32, "f16"))));
    assert.ok(q.pageCount >= 8192 / 32);
    // A budget buys what it pays for.
    assert.equal(planKvPool(ctx, llama1b, { ...request, kvCacheBytes: 64 * 1024 ** 2 }).pageCount, 64);
    assert.throws(() => planKvPool(ctx, llama1b, { ...request, kvCacheBytes: 1000 }), /--kv-budget/);
    // A device whose bindings cannot hold one context: refused, naming --context.
    const small = await createGpuContext({ limitOverrides: { maxStorageBufferBindingSize: 1024 ** 2 } });
    try {
      assert.throws(() => planKvPool(small, llama1b, request), (e: unknown) => e instanceof GpuError && e.code === "LIMIT_TOO_LOW" && /--context/.test(e.message));
      assert.throws(() => planKvLayout(small, llama1b, 32, 1024, "f16"), /--kv-budget/);
    } finally {
      await small.destroy();
    }
  } finally {
    await ctx.destroy();
  }
});
