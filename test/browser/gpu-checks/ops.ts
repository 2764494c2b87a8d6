/**
 * RMSNorm, RoPE (with the KV append) and attention in the page, against f64 formulas written
 * out here: one case each of test/deno/gpu-ops.test.ts, at awkward sizes. Tolerances are
 * relative to values of order 1, with the f32 reason beside each.
 */
import { createGpuContext, type GpuContext } from "../../../src/gpu/device.ts";
import { AttentionKernel } from "../../../src/gpu/kernels/attention.ts";
import { RmsNormKernel } from "../../../src/gpu/kernels/rmsnorm.ts";
import { RopeKernel, ropeFreqTable } from "../../../src/gpu/kernels/rope.ts";
import { type StepInfo, stepInfoBinding, TOKEN_RECORD_BYTES, type TokenRecord, writeStepInfo, writeTokenRecord } from "../../../src/gpu/kernels/tokens.ts";
import { GpuStep, ParamArena } from "../../../src/gpu/step.ts";
import type { RopeConfig } from "../../../src/model/config.ts";
import { ropeFrequencies } from "../../../src/model/reference-rope.ts";
import type { Comparison, KernelReport } from "./api.ts";
import { leftBuffers, randomArray, worstError } from "./measures.ts";

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** A context with the small helpers every op check needs. */
class OpBench {
  readonly ctx: GpuContext;
  readonly arena: ParamArena;
  readonly slotBytes: number;
  readonly comparisons: Comparison[] = [];
  readonly variants: string[] = [];

  constructor(ctx: GpuContext) {
    this.ctx = ctx;
    this.slotBytes = ctx.limits.minUniformBufferOffsetAlignment;
    this.arena = new ParamArena(ctx.allocator, this.slotBytes);
  }

  buffer(label: string, data: ArrayBufferView | number): GPUBuffer {
    const size = typeof data === "number" ? data : data.byteLength;
    const b = this.ctx.allocator.createBuffer({ label, size: Math.max(4, size), usage: STORAGE });
    if (typeof data !== "number") this.ctx.allocator.writeBuffer(b, 0, data);
    return b;
  }

  /** One sub-step's StepInfo in a uniform buffer, bound at slot 0. */
  stepInfo(info: StepInfo): { buffer: GPUBuffer; binding: GPUBufferBinding } {
    const view = new DataView(new ArrayBuffer(this.slotBytes));
    writeStepInfo(view, 0, info);
    const buffer = this.ctx.allocator.createBuffer({ label: "step info", size: view.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.ctx.allocator.writeBuffer(buffer, 0, view);
    return { buffer, binding: stepInfoBinding(buffer, 0, this.slotBytes) };
  }

  tokenTable(records: readonly TokenRecord[]): GPUBuffer {
    const view = new DataView(new ArrayBuffer(records.length * TOKEN_RECORD_BYTES));
    records.forEach((r, i) => writeTokenRecord(view, i, r));
    return this.buffer("tokens", view);
  }

  /** Records `body` into one step, submits it, and waits. */
  async run(label: string, body: (step: GpuStep) => void): Promise<void> {
    const step = new GpuStep(this.ctx, this.arena, label);
    body(step);
    step.submit();
    await this.ctx.finish();
  }

  async read(b: GPUBuffer, count: number, offset = 0): Promise<Float32Array> {
    return new Float32Array(await this.ctx.allocator.readBuffer(b, offset * 4, count * 4));
  }

  /** Records the worst error of `got` against `want` (|diff| / scale). */
  compare(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tolerance: number, scale = 1): void {
    const { worst, failure } = worstError(got, want, scale, tolerance);
    this.comparisons.push({ name, worst, tolerance, ...(failure ? { failure } : {}) });
  }
}

// ---------------------------------------------------------------------------------------
// RMSNorm: y = x / sqrt(mean(x²) + eps) · w, and the fused residual x += h first.

function cpuRmsNorm(x: ArrayLike<number>, w: ArrayLike<number>, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return Float64Array.from({ length: x.length }, (_, i) => x[i]! * inv * w[i]!);
}

async function checkRmsNorm(b: OpBench): Promise<void> {
  const width = 300;
  const rows = 5;
  const eps = 1e-5;
  const x = randomArray(rows * width, 1, 2, 0.3);
  const h = randomArray(rows * width, 2);
  const w = randomArray(width, 3, 0.2, 1);
  const [xb, hb, wb, y] = [b.buffer("x", x), b.buffer("h", h), b.buffer("w", w), b.buffer("y", rows * width * 4)];
  const info = b.stepInfo({ nTokens: rows, tokenBase: 0, nRows: 0, rowBase: 0 });
  const plain = new RmsNormKernel(b.ctx, { width, eps, residual: false, gather: false });
  const fused = new RmsNormKernel(b.ctx, { width, eps, residual: true, gather: false });
  await Promise.all([plain.prepare(), fused.prepare()]);
  b.variants.push(plain.variant.name, fused.variant.name);
  await b.run("rmsnorm", (step) => plain.record(step, plain.bind({ x: xb, weight: wb, y, step: info.binding }), rows));
  const y0 = await b.read(y, rows * width);
  await b.run("rmsnorm fused", (step) => fused.record(step, fused.bind({ x: xb, h: hb, weight: wb, y, step: info.binding }), rows));
  const y1 = await b.read(y, rows * width);
  const sum = x.map((v, i) => v + h[i]!);
  const want0 = new Float64Array(rows * width);
  const want1 = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) {
    want0.set(cpuRmsNorm(x.subarray(r * width, (r + 1) * width), w, eps), r * width);
    want1.set(cpuRmsNorm(sum.subarray(r * width, (r + 1) * width), w, eps), r * width);
  }
  // Outputs are O(1) (unit RMS times weights near 1): f32 sums of 300 squares drift ~1e-6.
  b.compare(`rmsnorm width ${width} × ${rows} rows`, y0, want0, 1e-5);
  b.compare(`rmsnorm + residual width ${width} × ${rows} rows`, y1, want1, 1e-5);
  b.compare("residual x + h written back", await b.read(xb, rows * width), sum, 1e-6, 4);
  for (const buf of [xb, hb, wb, y, info.buffer]) b.ctx.allocator.destroy(buf);
}

// ---------------------------------------------------------------------------------------
// RoPE: adjacent pairs (the embedded model's NORMAL layout) over the first 24 of 40 dims,
// at positions up to 2999 of two slots; K and V appended to an f32 cache.

/** Rotates a copy of `head` by pos · freq for each pair, in f64. */
function cpuRope(head: ArrayLike<number>, rope: RopeConfig, freqs: Float64Array, pos: number): Float64Array {
  const out = Float64Array.from(head);
  for (let i = 0; i < rope.dims / 2; i++) {
    const [a, c] = rope.layout === "normal" ? [2 * i, 2 * i + 1] : [i, i + rope.dims / 2];
    const angle = pos * freqs[i]!;
    out[a] = head[a]! * Math.cos(angle) - head[c]! * Math.sin(angle);
    out[c] = head[a]! * Math.sin(angle) + head[c]! * Math.cos(angle);
  }
  return out;
}

/**
 * |gpu − cpu| / 2 for rotated values a·cos − b·sin with |a|, |b| < 1. WGSL bounds sin and
 * cos of angles in [-π, π] only to 2^-11 absolute, and SwiftShader uses that room (1.9e-4
 * measured over [-π, π]), so a rotated value may be off by 2·2^-11 ≈ 9.8e-4; the angle
 * itself is within ~1e-5 turns (rope.wgsl) even at pos 2999. (gpu-ops.test.ts bounds it at
 * 2e-4, which lavapipe's sin and cos meet and SwiftShader's barely do.) A wrong pair, sign
 * or frequency moves values by O(1).
 */
const ROPE_TOLERANCE = 6e-4;

/** Pages of 16 positions; slot s owns pages [s·perSlot, (s+1)·perSlot) in reverse order. */
const PAGE_SIZE = 16;
function reversedPool(slots: number, ctxLen: number) {
  const perSlot = Math.ceil(ctxLen / PAGE_SIZE);
  const tables = Array.from({ length: slots }, (_, s) => Array.from({ length: perSlot }, (_, i) => (s + 1) * perSlot - 1 - i));
  const rowOf = (slot: number, pos: number) => tables[slot]![Math.floor(pos / PAGE_SIZE)]! * PAGE_SIZE + (pos % PAGE_SIZE);
  const rows = slots * perSlot * PAGE_SIZE;
  return { perSlot, tables, rowOf, rows, layout: { pageSize: PAGE_SIZE, rowsPerBinding: rows, bindings: 1 } };
}

async function checkRope(b: OpBench): Promise<void> {
  const rope: RopeConfig = { layout: "normal", base: 10000, dims: 24, scaling: { type: "none" } };
  const [headDim, nHeads, nKvHeads, ctxLen, slots] = [40, 6, 2, 3000, 2];
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const pool = reversedPool(slots, ctxLen);
  // Large positions too, where an f32 pos·freq would lose ~1e-3 of a turn.
  const toks: TokenRecord[] = [
    { id: 0, slot: 1, pos: 0, seq: 0, last: false, kvRow: pool.rowOf(1, 0) },
    { id: 0, slot: 1, pos: 1, seq: 1, last: false, kvRow: pool.rowOf(1, 1) },
    { id: 0, slot: 1, pos: 2, seq: 2, last: true, kvRow: pool.rowOf(1, 2) },
    { id: 0, slot: 0, pos: 2999, seq: 0, last: true, kvRow: pool.rowOf(0, 2999) },
    { id: 0, slot: 0, pos: 1777, seq: 0, last: true, kvRow: pool.rowOf(0, 1777) },
  ];
  const n = toks.length;
  const q = randomArray(n * qDim, 11);
  const k = randomArray(n * kvDim, 12);
  const v = randomArray(n * kvDim, 13);
  const freqs = ropeFrequencies(rope, null);
  const cacheBytes = pool.rows * kvDim * 4;
  const [qb, kb, vb, kc, vc] = [b.buffer("q", q), b.buffer("k", k), b.buffer("v", v), b.buffer("k cache", cacheBytes), b.buffer("v cache", cacheBytes)];
  const fb = b.buffer("freqs", ropeFreqTable(freqs));
  const tb = b.tokenTable(toks);
  const info = b.stepInfo({ nTokens: n, tokenBase: 0, nRows: 0, rowBase: 0 });
  const kernel = new RopeKernel(b.ctx, { headDim, nHeads, nKvHeads, ropeDims: rope.dims, neox: false, pool: pool.layout, kvF16: false, qkNormEps: null });
  await kernel.prepare();
  b.variants.push(kernel.variant.name);
  await b.run("rope", (step) => kernel.record(step, kernel.bind({ q: qb, k: kb, v: vb, kPool: [kc], vPool: [vc], freqs: fb, tokens: tb, step: info.binding }), n));
  const qGot = await b.read(qb, n * qDim);
  const qWant = new Float64Array(n * qDim);
  const kGot = new Float32Array(n * kvDim);
  const kWant = new Float64Array(n * kvDim);
  const vGot = new Float32Array(n * kvDim);
  for (let t = 0; t < n; t++) {
    const { slot, pos } = toks[t]!;
    for (let h = 0; h < nHeads; h++) {
      const at = t * qDim + h * headDim;
      qWant.set(cpuRope(q.subarray(at, at + headDim), rope, freqs, pos), at);
    }
    kGot.set(await b.read(kc, kvDim, pool.rowOf(slot, pos) * kvDim), t * kvDim);
    vGot.set(await b.read(vc, kvDim, pool.rowOf(slot, pos) * kvDim), t * kvDim);
    for (let h = 0; h < nKvHeads; h++) {
      const at = t * kvDim + h * headDim;
      kWant.set(cpuRope(k.subarray(at, at + headDim), rope, freqs, pos), at);
    }
  }
  b.compare("rope q (normal pairs, 24 of 40 dims, pos ≤ 2999)", qGot, qWant, ROPE_TOLERANCE, 2);
  b.compare("rope k appended to the cache", kGot, kWant, ROPE_TOLERANCE, 2);
  b.compare("v appended to the cache", vGot, v, 0);
  for (const buf of [qb, kb, vb, kc, vc, fb, tb, info.buffer]) b.ctx.allocator.destroy(buf);
}

// ---------------------------------------------------------------------------------------
// Attention: 6 query heads over 2 KV heads (GQA), head dim 48, f32 cache; a prefill at
// positions 0..3 and decodes over contexts of one tile plus one (64) and five tiles (299).

async function checkAttention(b: OpBench): Promise<void> {
  const [nHeads, nKvHeads, headDim, ctxLen, slots] = [6, 2, 48, 300, 3];
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  // Each slot's pages in reverse order: its positions read pool rows through its page table.
  const pool = reversedPool(slots, ctxLen);
  const toks: TokenRecord[] = [
    { id: 0, slot: 2, pos: 0, seq: 0, last: false, kvRow: pool.rowOf(2, 0) },
    { id: 0, slot: 2, pos: 1, seq: 1, last: false, kvRow: pool.rowOf(2, 1) },
    { id: 0, slot: 2, pos: 2, seq: 2, last: false, kvRow: pool.rowOf(2, 2) },
    { id: 0, slot: 2, pos: 3, seq: 3, last: true, kvRow: pool.rowOf(2, 3) },
    { id: 0, slot: 0, pos: 299, seq: 0, last: true, kvRow: pool.rowOf(0, 299) },
    { id: 0, slot: 1, pos: 64, seq: 0, last: true, kvRow: pool.rowOf(1, 64) },
  ];
  const n = toks.length;
  // Scores of a few units, so the softmax is neither flat nor one-hot.
  const kCache = randomArray(pool.rows * kvDim, 21, 1.5);
  const vCache = randomArray(pool.rows * kvDim, 22);
  const q = randomArray(n * qDim, 23, 1.5);
  const [qb, kc, vc, out] = [b.buffer("q", q), b.buffer("k cache", kCache), b.buffer("v cache", vCache), b.buffer("out", n * qDim * 4)];
  const pageTable = b.buffer("page tables", Uint32Array.from(pool.tables.flat()));
  const tb = b.tokenTable(toks);
  const info = b.stepInfo({ nTokens: n, tokenBase: 0, nRows: 0, rowBase: 0 });
  const key = { headDim, nHeads, nKvHeads, maxPages: pool.perSlot, pool: pool.layout, kvF16: false };
  const kernel = new AttentionKernel(b.ctx, key);
  // The split form (decode steps): 300 keys in spans of a tile, 5 work-groups per token.
  const split = new AttentionKernel(b.ctx, key, { splitTokens: n });
  await Promise.all([kernel.prepare(), split.prepare()]);
  b.variants.push(kernel.variant.name);
  await b.run("attention", (step) => kernel.record(step, kernel.bind({ q: qb, kPool: [kc], vPool: [vc], pageTable, out, tokens: tb, step: info.binding }), n));
  const got = await b.read(out, n * qDim);
  const scratch = b.buffer("scratch", split.scratchBytes);
  const outSplit = b.buffer("out split", n * qDim * 4);
  const splitGroups = split.bind({ q: qb, kPool: [kc], vPool: [vc], pageTable, out: outSplit, tokens: tb, step: info.binding, scratch });
  await b.run("attention split", (step) => split.record(step, splitGroups, n, 300));
  const gotSplit = await b.read(outSplit, n * qDim);
  const want = new Float64Array(n * qDim);
  const group = nHeads / nKvHeads;
  for (let t = 0; t < n; t++) {
    const { slot, pos } = toks[t]!;
    for (let h = 0; h < nHeads; h++) {
      const kvOff = Math.floor(h / group) * headDim;
      const scores = new Float64Array(pos + 1);
      for (let j = 0; j <= pos; j++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[t * qDim + h * headDim + d]! * kCache[pool.rowOf(slot, j) * kvDim + kvOff + d]!;
        scores[j] = dot / Math.sqrt(headDim);
      }
      const max = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - max));
      const total = e.reduce((a, c) => a + c, 0);
      for (let j = 0; j <= pos; j++) {
        for (let d = 0; d < headDim; d++) want[t * qDim + h * headDim + d] += (e[j]! / total) * vCache[pool.rowOf(slot, j) * kvDim + kvOff + d]!;
      }
    }
  }
  // Weighted means of values in [-1, 1]; f32 exp and sums over ≤ 300 positions drift ~1e-6.
  b.compare("attention 6/2 heads, dim 48, prefill 0..3 and decodes at 64, 299", got, want, 2e-5);
  b.compare(`attention split over ${split.splitCount(n, 300)} work-groups per token`, gotSplit, want, 2e-5);
  for (const buf of [qb, kc, vc, pageTable, out, tb, info.buffer, scratch, outSplit]) b.ctx.allocator.destroy(buf);
}

/** RMSNorm, RoPE and attention on one device. */
export async function checkOps(): Promise<KernelReport> {
  const began = performance.now();
  const ctx = await createGpuContext();
  try {
    const bench = new OpBench(ctx);
    await checkRmsNorm(bench);
    await checkRope(bench);
    await checkAttention(bench);
    ctx.check();
    bench.arena.destroy();
    leftBuffers(ctx, bench.comparisons, "op checks");
    return { comparisons: bench.comparisons, variants: bench.variants, ms: performance.now() - began };
  } finally {
    await ctx.destroy();
  }
}
