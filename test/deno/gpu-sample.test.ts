/**
 * The device sampler (shaders/sample.wgsl) against the CPU sampler (src/engine/sampler.ts).
 * Run: deno test -A test/deno/gpu-sample.test.ts   (lavapipe here; any WebGPU adapter works)
 *
 * Mismatch policy. Both implement the same steps, but the CPU computes penalties,
 * temperature and exp in f64 before rounding each value to f32, sorts, and sums in f64 in
 * sorted or index order; the GPU does all of it in f32 (exp within a few ULP), sums in a
 * tree / chunk order, and takes its parameters rounded to f32. So the two can pick different
 * tokens only when a decision sits within rounding of a boundary: the walk's target u × total
 * next to a running sum, a top-p goal next to a cumulative sum, two nearly equal p at the
 * top-k cut, two nearly equal logits for greedy. With random f32 logits that happens on the
 * order of 1e-4 of the draws. We require ≥ 99% exact agreement overall, and each mismatch to
 * be such a boundary case (checked by `explainMismatch`, with a relative slack of 1e-4, far
 * above f32 rounding and far below the gaps between random values).
 */
import assert from "node:assert/strict";
import type { SamplingParams } from "../../src/model/runner.ts";
import { applyPenalties, GREEDY, keepThreshold, sampleToken, uniform } from "../../src/sampling/sampler.ts";
import { createGpuContext, type GpuContext } from "../../src/gpu/device.ts";
import { HISTORY_CAP } from "../../src/gpu/kernels/history.ts";
import { createDeviceSampler, WgslSampler } from "../../src/gpu/kernels/sample.ts";
import { type DeviceSampler, SAMPLE_ROW_BYTES, sampleRowOf, writeSampleRow } from "../../src/gpu/kernels/sampling-hook.ts";

/** One sampling problem: a row of logits, its settings, the slot's token history. */
interface Case {
  readonly logits: Float32Array;
  readonly params: SamplingParams;
  readonly history: readonly number[];
  readonly sampleIndex: number;
  readonly label: string;
}

/** A small deterministic generator (xorshift32), so every run tests the same cases. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  float(): number {
    return this.u32() / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  normal(): number {
    const a = Math.max(this.float(), 1e-12);
    return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * this.float());
  }
}

/**
 * Samples every case on the GPU, `maxRows` per dispatch. Each case gets its own history slot
 * and writes its id at a permuted `outIndex`, so a kernel that mixes up rows, slots or
 * output places fails.
 */
async function sampleOnGpu(ctx: GpuContext, sampler: DeviceSampler, vocab: number, maxRows: number, cases: readonly Case[]): Promise<number[]> {
  const a = ctx.allocator;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const logits = a.createBuffer({ label: "test logits", size: maxRows * vocab * 4, usage });
  const rowParams = a.createBuffer({ label: "test rows", size: maxRows * SAMPLE_ROW_BYTES, usage });
  const history = a.createBuffer({ label: "test history", size: maxRows * (HISTORY_CAP + 1) * 4, usage });
  const lastSampled = a.createBuffer({ label: "test last", size: maxRows * 4, usage });
  const outIds = a.createBuffer({ label: "test out", size: maxRows * 4, usage });
  const ids: number[] = [];
  try {
    for (let start = 0; start < cases.length; start += maxRows) {
      const batch = cases.slice(start, start + maxRows);
      const n = batch.length;
      const flat = new Float32Array(n * vocab);
      const rings = new Uint32Array(n * (HISTORY_CAP + 1));
      const rows = new DataView(new ArrayBuffer(n * SAMPLE_ROW_BYTES));
      batch.forEach((c, i) => {
        flat.set(c.logits, i * vocab);
        writeRing(rings, i, c.history);
        writeSampleRow(rows, i * SAMPLE_ROW_BYTES, sampleRowOf(c.params, i, c.sampleIndex, n - 1 - i));
      });
      a.writeBuffer(logits, 0, flat);
      a.writeBuffer(history, 0, rings);
      a.writeBuffer(rowParams, 0, rows);
      a.writeBuffer(lastSampled, 0, new Uint32Array(maxRows).fill(0xdeadbeef));
      const encoder = ctx.device.createCommandEncoder({ label: "sample test" });
      const pass = encoder.beginComputePass();
      sampler.record(pass, { logits, rows: n, rowParams, history, lastSampled, outIds });
      pass.end();
      ctx.device.queue.submit([encoder.finish()]);
      const out = new Uint32Array(await a.readBuffer(outIds, 0, n * 4));
      const last = new Uint32Array(await a.readBuffer(lastSampled, 0, n * 4));
      ctx.check();
      for (let i = 0; i < n; i++) {
        assert.equal(last[i], out[n - 1 - i], `lastSampled[${i}] must equal outIds[outIndex] of the same row`);
        ids.push(out[n - 1 - i]!);
      }
    }
  } finally {
    for (const b of [logits, rowParams, history, lastSampled, outIds]) a.destroy(b);
  }
  return ids;
}

/** The ring layout of the brief: word 0 = count, word 1 + (n % CAP) = the n-th token. */
function writeRing(rings: Uint32Array, slot: number, tokens: readonly number[]): void {
  const base = slot * (HISTORY_CAP + 1);
  rings[base] = tokens.length;
  tokens.forEach((t, n) => {
    rings[base + 1 + (n % HISTORY_CAP)] = t;
  });
}

const OFF: SamplingParams = { ...GREEDY, temperature: 1 };

/** The settings exercised at every vocabulary size (label → params). */
function settings(vocab: number): [string, SamplingParams][] {
  return [
    ["greedy", GREEDY],
    ["T=0.7", { ...OFF, temperature: 0.7 }],
    ["T=1.5", { ...OFF, temperature: 1.5 }],
    ["topK=1", { ...OFF, topK: 1 }],
    ["topK=5", { ...OFF, topK: 5, temperature: 0.9 }],
    ["topK=40", { ...OFF, topK: 40 }],
    [`topK=${vocab - 1}`, { ...OFF, topK: vocab - 1 }],
    ["topP=0.5", { ...OFF, topP: 0.5 }],
    ["topP=0.9 T=3 (flat: many kept)", { ...OFF, topP: 0.9, temperature: 3 }],
    ["minP=0.05", { ...OFF, minP: 0.05 }],
    ["minP=0.2 T=0.8", { ...OFF, minP: 0.2, temperature: 0.8 }],
    ["defaults k40 p.95 minP.05 T.8", { ...OFF, temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 }],
    ["k200 p0.8 T2", { ...OFF, temperature: 2, topK: 200, topP: 0.8 }],
    ["repeat 1.3 w64", { ...OFF, repeatPenalty: 1.3, penaltyWindow: 64, topK: 40 }],
    ["repeat+presence+frequency w1024 greedy", { ...GREEDY, repeatPenalty: 1.1, presencePenalty: 0.5, frequencyPenalty: 0.3, penaltyWindow: 1024 }],
    ["presence+frequency w300 topP", { ...OFF, presencePenalty: 0.7, frequencyPenalty: 0.4, penaltyWindow: 300, topP: 0.9 }],
  ];
}

/** Random cases for one vocabulary size: several logit scales, histories and counters. */
function makeCases(vocab: number, perSetting: number, rng: Rng): Case[] {
  const cases: Case[] = [];
  for (const [label, params] of settings(vocab)) {
    for (let k = 0; k < perSetting; k++) {
      const scale = [1, 3, 8][k % 3]!;
      const logits = new Float32Array(vocab);
      for (let i = 0; i < vocab; i++) logits[i] = scale * rng.normal();
      // Histories repeat some top tokens (so penalties change the outcome) and random ones,
      // and some are longer than the ring, so the GPU reads a wrapped ring.
      const top = topIndices(logits, 30);
      const length = [0, 50, 700, 1500][k % 4]!;
      const history: number[] = [];
      for (let i = 0; i < length; i++) history.push(rng.float() < 0.3 ? top[rng.int(top.length)]! : rng.int(vocab));
      const seed = rng.u32();
      cases.push({ logits, params: { ...params, seed }, history, sampleIndex: rng.int(5000), label });
    }
  }
  // Ties: integer logits, so many tokens share each p exactly (and on both sides).
  for (let k = 0; k < perSetting; k++) {
    const logits = new Float32Array(vocab);
    for (let i = 0; i < vocab; i++) logits[i] = Math.floor(rng.float() * 6);
    const topK = [1, 3, 50, 1000][k % 4]!;
    cases.push({ logits, params: { ...OFF, topK, topP: 0.7, seed: rng.u32() }, history: [], sampleIndex: k, label: `ties topK=${topK} topP=0.7` });
    cases.push({ logits, params: { ...GREEDY, seed: 0 }, history: [], sampleIndex: k, label: "ties greedy" });
  }
  // Every logit -Infinity (garbage in): both samplers still agree on an id in range.
  const dead = new Float32Array(vocab).fill(-Infinity);
  for (const [label, params] of [["-Infinity greedy", GREEDY], ["-Infinity T=1", OFF], ["-Infinity topK=2", { ...OFF, topK: 2 }]] as const) {
    cases.push({ logits: dead, params, history: [], sampleIndex: 0, label });
  }
  return cases;
}

function topIndices(values: Float32Array, n: number): number[] {
  return [...values.keys()].sort((a, b) => values[b]! - values[a]! || a - b).slice(0, n);
}

/**
 * Why CPU and GPU may disagree on `c` (see the module comment): returns a reason when the
 * CPU's own decision is within `slack` (relative) of a boundary that separates the two ids,
 * or null when the mismatch is a real error.
 */
function explainMismatch(c: Case, cpu: number, gpu: number, slack = 1e-4): string | null {
  const l = Float32Array.from(c.logits);
  applyPenalties(l, c.history, c.params);
  if (c.params.temperature <= 0) {
    return Math.abs(l[cpu]! - l[gpu]!) <= slack * Math.max(1, Math.abs(l[cpu]!)) ? "greedy near-tie" : null;
  }
  let max = -Infinity;
  for (let i = 0; i < l.length; i++) max = Math.max(max, l[i]! / c.params.temperature);
  const p = new Float32Array(l.length);
  for (let i = 0; i < l.length; i++) p[i] = Math.exp(l[i]! / c.params.temperature - max);
  const threshold = keepThreshold(p, c.params);
  // A kept-set boundary: the cut (the k-th largest p, minP, or the top-p cut) falls between
  // two p within slack of each other, minP lies within slack of some p, or the cumulative
  // sum of the sorted p comes within slack of the top-p goal.
  const sorted = Float64Array.from(p).sort().reverse();
  const below = sorted.find((v) => v < threshold) ?? 0;
  if (threshold > 0 && threshold - below <= slack * threshold) return "two p straddle the keep threshold";
  if (c.params.minP > 0 && sorted.some((v) => Math.abs(v - c.params.minP) <= slack * c.params.minP)) return "a p next to minP";
  if (c.params.topP < 1) {
    const before = keepThreshold(p, { ...c.params, topP: 1 });
    let total = 0;
    for (const v of sorted) if (v >= before) total += v;
    let cumulative = 0;
    for (const v of sorted) {
      if (v < before) break;
      cumulative += v;
      if (Math.abs(cumulative - c.params.topP * total) <= slack * total) return "cumulative p next to the top-p goal";
    }
  }
  let total = 0;
  for (const v of sorted) if (v >= threshold) total += v;
  if (p[gpu]! < threshold * (1 - slack)) return null; // the GPU drew a token clearly excluded
  // The walk: the target u × total lies within slack of a running sum between the two ids.
  const target = uniform(c.params.seed, c.sampleIndex) * total;
  let running = 0;
  for (let i = 0; i <= Math.max(cpu, gpu); i++) {
    if (p[i]! < threshold) continue;
    running += p[i]!;
    if (i >= Math.min(cpu, gpu) && Math.abs(running - target) <= slack * total) return "walk target next to a running sum";
  }
  return null;
}

async function withSampler<T>(vocab: number, maxRows: number, fn: (ctx: GpuContext, s: DeviceSampler) => Promise<T>, workgroupSize?: number): Promise<T> {
  const ctx = await createGpuContext();
  try {
    return await fn(ctx, await createDeviceSampler(ctx, { vocabSize: vocab, maxRows, workgroupSize }));
  } finally {
    await ctx.destroy();
  }
}

/** Runs `cases` on both samplers; returns the mismatches (each explained, or the test fails). */
async function compare(vocab: number, cases: readonly Case[], workgroupSize?: number): Promise<number> {
  const gpu = await withSampler(vocab, 64, (ctx, s) => sampleOnGpu(ctx, s, vocab, 64, cases), workgroupSize);
  let mismatches = 0;
  cases.forEach((c, i) => {
    const cpu = sampleToken(c.logits, c.params, c.history, c.sampleIndex);
    if (cpu === gpu[i]) return;
    mismatches++;
    const why = explainMismatch(c, cpu, gpu[i]!);
    console.log(`vocab ${vocab} case ${i} (${c.label}): cpu ${cpu}, gpu ${gpu[i]}: ${why ?? "UNEXPLAINED"}`);
    assert.ok(why !== null, `case ${i} (${c.label}): gpu drew ${gpu[i]}, cpu ${cpu}, and no boundary explains it`);
  });
  return mismatches;
}

let totalCases = 0;
let totalMismatches = 0;

for (const [vocab, perSetting] of [[1000, 16], [4099, 10], [32003, 5]] as const) {
  Deno.test(`sample.wgsl draws the CPU sampler's token, vocab ${vocab}`, async () => {
    const cases = makeCases(vocab, perSetting, new Rng(vocab));
    // The mismatch check itself must be able to fail: a top-k=5 case "drawing" the lowest
    // logit, or a greedy case drawing the second best, is explained by no boundary.
    for (const c of cases.filter((x) => x.label === "topK=5" || x.label === "greedy")) {
      const cpu = sampleToken(c.logits, c.params, c.history, c.sampleIndex);
      const order = topIndices(c.logits, vocab);
      const wrong = c.label === "greedy" ? order[1]! : order[vocab - 1]!;
      assert.equal(explainMismatch(c, cpu, wrong), null, `${c.label}: a draw of ${wrong} must count as unexplained`);
    }
    const mismatches = await compare(vocab, cases);
    totalCases += cases.length;
    totalMismatches += mismatches;
    assert.ok(mismatches <= cases.length * 0.01, `${mismatches} of ${cases.length} cases differ (over 1%)`);
  });
}

Deno.test("sample.wgsl with 64 threads per work-group (other chunking) agrees too", async () => {
  const cases = makeCases(4099, 4, new Rng(99));
  const mismatches = await compare(4099, cases, 64);
  totalCases += cases.length;
  totalMismatches += mismatches;
  assert.ok(mismatches <= cases.length * 0.01);
});

Deno.test("sample.wgsl: at least 99% of all cases agree exactly", () => {
  assert.ok(totalCases > 500, `only ${totalCases} cases ran`);
  assert.ok(totalMismatches <= totalCases * 0.01, `${totalMismatches} of ${totalCases} differ`);
});

/**
 * Upper 1e-3 quantiles of the chi-square distribution by degrees of freedom (from
 * scipy.stats.chi2.isf(1e-3, df)). A correct sampler exceeds them with probability 1e-3
 * per test, if its uniforms behave like independent uniforms: that false-alarm rate is low
 * enough for CI, while a sampler that is off by a few percent on a token (4000 draws, the
 * expected counts here are 100–1500) gives statistics in the tens to hundreds.
 */
const CHI2_CRIT_1E3: Readonly<Record<number, number>> = { 1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515, 6: 22.458, 7: 24.322 };

/** Σ (observed − expected)² / expected over the categories. */
function chiSquare(observed: readonly number[], expected: readonly number[]): number {
  return observed.reduce((acc, o, i) => acc + (o - expected[i]!) ** 2 / expected[i]!, 0);
}

/** Two-sample homogeneity: Σ over both samples of (O − E)² / E with E from pooled counts. */
function chiSquareTwoSample(a: readonly number[], b: readonly number[]): number {
  const na = a.reduce((x, y) => x + y, 0);
  const nb = b.reduce((x, y) => x + y, 0);
  let stat = 0;
  a.forEach((ai, i) => {
    const pooled = (ai + b[i]!) / (na + nb);
    stat += (ai - na * pooled) ** 2 / (na * pooled) + (b[i]! - nb * pooled) ** 2 / (nb * pooled);
  });
  return stat;
}

/**
 * Exact probabilities after temperature, top-k, top-p and min-p, by hand in f64 (not with
 * keepThreshold): sort, cut, normalize. Ties do not occur in these logits.
 */
function exactProbabilities(logits: readonly number[], p: SamplingParams): number[] {
  const max = Math.max(...logits);
  const w = logits.map((l) => Math.exp((l - max) / p.temperature));
  const order = [...w.keys()].sort((a, b) => w[b]! - w[a]!);
  let kept = order.filter((i) => w[i]! >= p.minP);
  if (p.topK > 0) kept = kept.slice(0, p.topK);
  if (p.topP < 1) {
    const total = kept.reduce((s, i) => s + w[i]!, 0);
    let running = 0;
    const n = kept.findIndex((i) => (running += w[i]!) >= p.topP * total);
    kept = kept.slice(0, n + 1);
  }
  const sum = kept.reduce((s, i) => s + w[i]!, 0);
  return w.map((v, i) => (kept.includes(i) ? v / sum : 0));
}

const FREQUENCY_LOGITS = [1.2, -0.3, 2.0, 0.4, -1.5, 1.7, 0.9, -0.8];

for (const [label, params] of [
  ["T=0.9 topK=6 topP=0.9", { ...OFF, temperature: 0.9, topK: 6, topP: 0.9, seed: 20240611 }],
  ["T=1.3 minP=0.1", { ...OFF, temperature: 1.3, minP: 0.1, seed: 7 }],
] as const) {
  Deno.test(`sample.wgsl frequencies over 4000 draws match the exact probabilities (${label})`, async () => {
    const draws = 4000;
    const logits = Float32Array.from(FREQUENCY_LOGITS);
    const cases: Case[] = [];
    for (let i = 0; i < draws; i++) cases.push({ logits, params, history: [], sampleIndex: i, label });
    const gpu = await withSampler(8, draws, (ctx, s) => sampleOnGpu(ctx, s, 8, draws, cases));
    const cpu = cases.map((c) => sampleToken(c.logits, c.params, c.history, c.sampleIndex));

    const probs = exactProbabilities(FREQUENCY_LOGITS, params);
    const kept = probs.flatMap((q, i) => (q > 0 ? [i] : []));
    assert.ok(kept.length >= 3 && kept.length < 8, `the settings keep ${kept.length} tokens; the test wants some excluded`);
    const count = (ids: readonly number[]) => kept.map((t) => ids.filter((id) => id === t).length);
    for (let t = 0; t < 8; t++) {
      if (probs[t] === 0) assert.equal(gpu.filter((id) => id === t).length, 0, `excluded token ${t} was drawn`);
    }
    const expected = kept.map((t) => probs[t]! * draws);
    assert.ok(Math.min(...expected) >= 5, "chi-square needs expected counts ≥ 5");
    const crit = CHI2_CRIT_1E3[kept.length - 1]!;
    const vsExact = chiSquare(count(gpu), expected);
    const vsCpu = chiSquareTwoSample(count(gpu), count(cpu));
    console.log(`${label}: kept ${kept}, gpu ${count(gpu)}, expected ${expected.map((e) => e.toFixed(0))}, χ² ${vsExact.toFixed(2)} (crit ${crit}), vs cpu ${vsCpu.toFixed(2)}`);
    assert.ok(vsExact < crit, `χ² against exact probabilities ${vsExact} ≥ ${crit} (df ${kept.length - 1})`);
    assert.ok(vsCpu < crit, `χ² against the CPU's draws ${vsCpu} ≥ ${crit} (df ${kept.length - 1})`);
    // Same u per draw on both sides, 8 well-separated tokens: the draws themselves agree.
    assert.deepEqual(gpu, cpu);
  });
}

Deno.test("WgslSampler refuses a penalty window longer than the device history ring", async () => {
  const ctx = await createGpuContext();
  try {
    const s = new WgslSampler(ctx, { vocabSize: 16, maxRows: 1 });
    assert.ok(s.supports({ ...OFF, topK: 5, topP: 0.5, minP: 0.1, penaltyWindow: 5000 })); // penalties off
    assert.ok(s.supports({ ...OFF, repeatPenalty: 1.1, penaltyWindow: HISTORY_CAP }));
    assert.ok(!s.supports({ ...OFF, repeatPenalty: 1.1, penaltyWindow: HISTORY_CAP + 1 }));
  } finally {
    await ctx.destroy();
  }
});

Deno.test("sample.wgsl rejects more rows than it was made for", async () => {
  await withSampler(16, 2, (ctx, s) => {
    const encoder = ctx.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    const b = ctx.allocator.createBuffer({ label: "x", size: 1024, usage: GPUBufferUsage.STORAGE });
    assert.throws(() => s.record(pass, { logits: b, rows: 3, rowParams: b, history: b, lastSampled: b, outIds: b }), /rows: 3 must be/);
    pass.end();
    return Promise.resolve();
  });
});
