/**
 * The model's op kernels (everything but the matrix products) against plain CPU
 * computations on random inputs of awkward sizes.
 * Run: deno test -A test/deno/gpu-ops.test.ts   (lavapipe here; any WebGPU adapter works)
 *
 * Each expected value is computed here in f64 from the same inputs the GPU reads (f16
 * caches: the same f16-rounded values), written out directly from the formula, not through
 * the code under test. Tolerances are relative to the size of the values involved and
 * stated per test, with the f32 reason.
 */
import assert from "node:assert/strict";
import { GGMLType, ggmlTypeName } from "../../src/gguf/ggml-type.ts";
import { dequantize, f16BitsToF32, f32ToF16Bits, quantize } from "../../src/gguf/quant/index.ts";
import { createGpuContext } from "../../src/gpu/device.ts";
import { AttentionKernel, headsPerWorkgroup } from "../../src/gpu/kernels/attention.ts";
import { ElementwiseKernel } from "../../src/gpu/kernels/elementwise.ts";
import { EmbeddingKernel } from "../../src/gpu/kernels/embedding.ts";
import { createHistoryBuffer, HISTORY_CAP, HISTORY_SLOT_WORDS, HistoryKernel, resetHistorySlot } from "../../src/gpu/kernels/history.ts";
import { RmsNormKernel } from "../../src/gpu/kernels/rmsnorm.ts";
import { RopeKernel, ropeFreqTable } from "../../src/gpu/kernels/rope.ts";
import { SAMPLE_ROW_BYTES, sampleRowOf, writeSampleRow } from "../../src/gpu/kernels/sampling-hook.ts";
import { createDeviceSampler } from "../../src/gpu/kernels/sample.ts";
import {
  FROM_LAST_SAMPLED,
  type StepInfo,
  stepInfoBinding,
  TOKEN_RECORD_BYTES,
  type TokenRecord,
  writeStepInfo,
  writeTokenRecord,
} from "../../src/gpu/kernels/tokens.ts";
import { GpuStep, ParamArena } from "../../src/gpu/step.ts";
import { destroyWeight, uploadWeight } from "../../src/gpu/weights.ts";
import { GREEDY } from "../../src/sampling/sampler.ts";
import type { RopeConfig } from "../../src/model/config.ts";
import { ropeFrequencies } from "../../src/model/reference-rope.ts";
import { assertClose } from "./support/assert-close.ts";

const ctx = await createGpuContext();
const slotBytes = ctx.limits.minUniformBufferOffsetAlignment;
const arena = new ParamArena(ctx.allocator, slotBytes);

// ---------------------------------------------------------------------------------------
// Helpers.

/** Deterministic uniform numbers in [-1, 1) (mulberry32). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function randomArray(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const next = random(seed);
  return Float32Array.from({ length: n }, () => offset + next() * scale);
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

function buffer(label: string, data: ArrayBufferView | number): GPUBuffer {
  if (typeof data === "number") return ctx.allocator.createBuffer({ label, size: Math.max(4, data), usage: STORAGE });
  const b = ctx.allocator.createBuffer({ label, size: Math.max(4, data.byteLength), usage: STORAGE });
  ctx.allocator.writeBuffer(b, 0, data);
  return b;
}

/** A uniform buffer of StepInfo slots. */
function stepInfos(infos: readonly StepInfo[]): GPUBuffer {
  const view = new DataView(new ArrayBuffer(infos.length * slotBytes));
  infos.forEach((info, i) => writeStepInfo(view, i * slotBytes, info));
  const b = ctx.allocator.createBuffer({ label: "step infos", size: view.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  ctx.allocator.writeBuffer(b, 0, view);
  return b;
}

function tokenTable(records: readonly TokenRecord[]): GPUBuffer {
  const view = new DataView(new ArrayBuffer(records.length * TOKEN_RECORD_BYTES));
  records.forEach((r, i) => writeTokenRecord(view, i, r));
  return buffer("tokens", view);
}

function record(tokens: number, base = 0): StepInfo {
  return { nTokens: tokens, tokenBase: base, nRows: 0, rowBase: 0 };
}

/** Records `body` into one step, submits it, and waits. */
async function run(label: string, body: (step: GpuStep) => void): Promise<void> {
  const step = new GpuStep(ctx, arena, label);
  body(step);
  step.submit();
  await ctx.finish();
}

async function readF32(b: GPUBuffer, count: number, offset = 0): Promise<Float32Array> {
  return new Float32Array(await ctx.allocator.readBuffer(b, offset * 4, count * 4));
}

async function readU32(b: GPUBuffer, count: number, offset = 0): Promise<Uint32Array> {
  return new Uint32Array(await ctx.allocator.readBuffer(b, offset * 4, count * 4));
}

function f16Round(values: Float32Array): Float32Array {
  return values.map((v) => f16BitsToF32(f32ToF16Bits(v)));
}

function f16Pack(values: Float32Array): Uint16Array {
  return Uint16Array.from(values, (v) => f32ToF16Bits(v));
}

/**
 * A scrambled page table per slot: every slot's pages are a shuffled part of one pool of
 * `slots · pagesPerSlot` pages, so neighbouring positions of a sequence sit far apart.
 */
function scrambledPageTables(slots: number, pagesPerSlot: number, seed: number): number[][] {
  const pages = Array.from({ length: slots * pagesPerSlot }, (_, i) => i);
  let state = seed;
  for (let i = pages.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) >>> 0;
    const j = state % (i + 1);
    [pages[i], pages[j]] = [pages[j]!, pages[i]!];
  }
  return Array.from({ length: slots }, (_, s) => pages.slice(s * pagesPerSlot, (s + 1) * pagesPerSlot));
}

/** Pool buffers of `rows` rows of `rowWords` 4-byte words, `rowsPerBinding` rows per buffer, filled from `words`. */
function poolBuffers(label: string, words: ArrayBufferView & ArrayLike<number>, rows: number, rowWords: number, rowsPerBinding: number): GPUBuffer[] {
  const out: GPUBuffer[] = [];
  const u32 = new Uint32Array(words.buffer, words.byteOffset, rows * rowWords);
  for (let first = 0; first < rows; first += rowsPerBinding) {
    const end = Math.min(rows, first + rowsPerBinding);
    out.push(buffer(`${label} ${out.length}`, u32.slice(first * rowWords, end * rowWords)));
  }
  return out;
}

function destroyAll(...buffers: GPUBuffer[]): void {
  for (const b of buffers) ctx.allocator.destroy(b);
}

// ---------------------------------------------------------------------------------------
// RMSNorm.

function cpuRmsNorm(x: Float32Array, w: Float32Array, eps: number): Float64Array<ArrayBuffer> {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return Float64Array.from(x, (v, i) => v * inv * w[i]!);
}

Deno.test("rmsnorm: plain, fused residual add, and residual + row gather (width 300, 1100)", async () => {
  for (const width of [300, 1100]) {
    const rows = 5;
    const eps = 1e-5;
    const x = randomArray(rows * width, 1, 2, 0.3);
    const h = randomArray(rows * width, 2);
    const w = randomArray(width, 3, 0.2, 1);
    const xb = buffer("x", x);
    const hb = buffer("h", h);
    const wb = buffer("w", w);
    const y = buffer("y", rows * width * 4);
    const gathered = [3, 0];
    const rowTable = buffer("rows", Uint32Array.from(gathered));
    const y2 = buffer("y2", gathered.length * width * 4);
    const info = stepInfos([{ nTokens: rows, tokenBase: 0, nRows: gathered.length, rowBase: 0 }]);
    const stepB = stepInfoBinding(info, 0, slotBytes);
    const plain = new RmsNormKernel(ctx, { width, eps, residual: false, gather: false });
    const fused = new RmsNormKernel(ctx, { width, eps, residual: true, gather: false });
    const gather = new RmsNormKernel(ctx, { width, eps, residual: true, gather: true });
    await Promise.all([plain.prepare(), fused.prepare(), gather.prepare()]);

    // y = norm(x); then gather rows of norm(x + h) (x untouched); then x += h, y = norm(x).
    await run("rmsnorm", (step) => {
      plain.record(step, plain.bind({ x: xb, weight: wb, y, step: stepB }), rows);
    });
    const y0 = await readF32(y, rows * width);
    await run("rmsnorm gather", (step) => {
      gather.record(step, gather.bind({ x: xb, h: hb, weight: wb, y: y2, step: stepB, rows: rowTable }), gathered.length);
    });
    const yg = await readF32(y2, gathered.length * width);
    await run("rmsnorm fused", (step) => {
      fused.record(step, fused.bind({ x: xb, h: hb, weight: wb, y, step: stepB }), rows);
    });
    const y1 = await readF32(y, rows * width);
    const x1 = await readF32(xb, rows * width);

    // Outputs are O(1) (unit RMS times weights near 1): f32 sums of ≤1100 squares drift ~1e-6.
    const sum = x.map((v, i) => v + h[i]!);
    for (let r = 0; r < rows; r++) {
      const row = (a: Float32Array) => a.subarray(r * width, (r + 1) * width);
      assertClose(`plain row ${r}`, row(y0), cpuRmsNorm(row(x), w, eps), 1e-5);
      assertClose(`fused row ${r}`, row(y1), cpuRmsNorm(row(sum), w, eps), 1e-5);
      assertClose(`x + h row ${r}`, row(x1), row(sum), 1e-6, 4);
    }
    gathered.forEach((src, r) => {
      assertClose(`gathered row ${r}`, yg.subarray(r * width, (r + 1) * width), cpuRmsNorm(sum.subarray(src * width, (src + 1) * width), w, eps), 1e-5);
    });
    destroyAll(xb, hb, wb, y, rowTable, y2, info);
  }
});

Deno.test("rmsnorm: post-norm x += rmsnorm(h)·w over 3 of 4 rows, and the row gather of x alone (width 300, 1100)", async () => {
  for (const width of [300, 1100]) {
    const rows = 4;
    const nTokens = 3;
    const eps = 1e-6;
    const x = randomArray(rows * width, 4, 2, 0.3);
    const h = randomArray(rows * width, 5, 3);
    const w = randomArray(width, 6, 0.2, 1);
    const xb = buffer("x", x);
    const hb = buffer("h", h);
    const wb = buffer("w", w);
    const gathered = [2, 0];
    const rowTable = buffer("rows", Uint32Array.from(gathered));
    const y = buffer("y", gathered.length * width * 4);
    const info = stepInfos([{ nTokens, tokenBase: 0, nRows: gathered.length, rowBase: 0 }]);
    const stepB = stepInfoBinding(info, 0, slotBytes);
    const post = new RmsNormKernel(ctx, { width, eps, residual: false, gather: false, post: true });
    const gather = new RmsNormKernel(ctx, { width, eps, residual: false, gather: true });
    await Promise.all([post.prepare(), gather.prepare()]);

    await run("rmsnorm post", (step) => {
      post.record(step, post.bind({ x: xb, h: hb, weight: wb, step: stepB }), nTokens);
      gather.record(step, gather.bind({ x: xb, weight: wb, y, step: stepB, rows: rowTable }), gathered.length);
    });
    const x1 = await readF32(xb, rows * width);
    const yg = await readF32(y, gathered.length * width);

    const row = (a: ArrayLike<number>, r: number) => Array.from(a).slice(r * width, (r + 1) * width);
    const want = Float32Array.from(x);
    for (let r = 0; r < nTokens; r++) {
      const normed = cpuRmsNorm(Float32Array.from(row(h, r)), w, eps);
      normed.forEach((v, i) => (want[r * width + i] = x[r * width + i]! + v));
    }
    for (let r = 0; r < rows; r++) assertClose(`x + rmsnorm(h) row ${r}`, row(x1, r), row(want, r), 1e-5, 4);
    gathered.forEach((src, r) => {
      assertClose(`gathered row ${r}`, row(yg, r), cpuRmsNorm(Float32Array.from(row(want, src)), w, eps), 1e-5);
    });
    destroyAll(xb, hb, wb, y, rowTable, info);
  }
});

Deno.test("rmsnorm: in place x = rmsnorm(x)·w over 3 of 4 rows, the fourth untouched (width 256, 1100)", async () => {
  for (const width of [256, 1100]) {
    const rows = 4;
    const nTokens = 3;
    const eps = 1e-6;
    const x = randomArray(rows * width, 7, 2, 0.3);
    const w = randomArray(width, 8, 0.2, 1);
    const xb = buffer("x", x);
    const wb = buffer("w", w);
    const info = stepInfos([{ nTokens, tokenBase: 0, nRows: 0, rowBase: 0 }]);
    const inPlace = new RmsNormKernel(ctx, { width, eps, residual: false, gather: false, inPlace: true });
    await inPlace.prepare();
    await run("rmsnorm in place", (step) => inPlace.record(step, inPlace.bind({ x: xb, weight: wb, step: stepInfoBinding(info, 0, slotBytes) }), nTokens));
    const got = await readF32(xb, rows * width);
    const row = (a: ArrayLike<number>, r: number) => Float32Array.from(Array.from(a).slice(r * width, (r + 1) * width));
    for (let r = 0; r < nTokens; r++) assertClose(`rmsnorm(x) row ${r}`, row(got, r), cpuRmsNorm(row(x, r), w, eps), 1e-5);
    assertClose("row 3 (not a token)", row(got, 3), row(x, 3), 0);
    destroyAll(xb, wb, info);
  }
});

// ---------------------------------------------------------------------------------------
// RoPE (+ qk norm + KV append).

interface RopeCase {
  readonly name: string;
  readonly rope: RopeConfig;
  readonly divisors: Float32Array | null;
  readonly headDim: number;
  readonly qkNorm: boolean;
  readonly kvF16: boolean;
}

/** Rotates `head` (a copy) the way the reference model does, in f64. */
function cpuRope(head: Float64Array, rope: RopeConfig, freqs: Float64Array, pos: number): Float64Array {
  const out = Float64Array.from(head);
  const half = rope.dims / 2;
  for (let i = 0; i < half; i++) {
    const [a, b] = rope.layout === "normal" ? [2 * i, 2 * i + 1] : [i, i + half];
    const angle = pos * freqs[i]!;
    out[a] = head[a]! * Math.cos(angle) - head[b]! * Math.sin(angle);
    out[b] = head[a]! * Math.sin(angle) + head[b]! * Math.cos(angle);
  }
  return out;
}

function cpuHeadNorm(head: Float32Array, w: Float32Array, eps: number): Float64Array<ArrayBuffer> {
  return cpuRmsNorm(head, w, eps);
}

const ROPE_CASES: RopeCase[] = [
  {
    name: "normal pairs, rope dims < head dim, Llama 3 divisors",
    rope: { layout: "normal", base: 10000, dims: 24, scaling: { type: "none" } },
    divisors: Float32Array.from({ length: 12 }, (_, i) => 1 + (i % 5) * 1.7),
    headDim: 40,
    qkNorm: false,
    kvF16: false,
  },
  {
    name: "neox pairs, linear scaling, qk norm",
    rope: { layout: "neox", base: 1e6, dims: 40, scaling: { type: "linear", factor: 2 } },
    divisors: null,
    headDim: 40,
    qkNorm: true,
    kvF16: false,
  },
  {
    name: "neox pairs, f16 cache",
    rope: { layout: "neox", base: 10000, dims: 32, scaling: { type: "none" } },
    divisors: null,
    headDim: 40,
    qkNorm: false,
    kvF16: true,
  },
];

for (const c of ROPE_CASES) {
  Deno.test(`rope + KV append: ${c.name}`, async () => {
    const nHeads = 6;
    const nKvHeads = 2;
    const ctxLen = 3000;
    const slots = 2;
    const eps = 1e-6;
    const qDim = nHeads * c.headDim;
    const kvDim = nKvHeads * c.headDim;
    // A pool of 16-position pages in scrambled order, over 3 bindings.
    const pageSize = 16;
    const pagesPerSlot = Math.ceil(ctxLen / pageSize);
    const tables = scrambledPageTables(slots, pagesPerSlot, 5);
    const rowsPerBinding = 130 * pageSize;
    const pool = { pageSize, rowsPerBinding, bindings: Math.ceil((slots * pagesPerSlot * pageSize) / rowsPerBinding) };
    assert.equal(pool.bindings, 3);
    const kvRow = (slot: number, pos: number) => tables[slot]![Math.floor(pos / pageSize)]! * pageSize + (pos % pageSize);
    // Positions include large ones, where an f32 pos·freq would lose ~1e-3 of a turn.
    const toks: TokenRecord[] = [
      { id: 0, slot: 1, pos: 0, seq: 0, last: false, kvRow: kvRow(1, 0) },
      { id: 0, slot: 1, pos: 1, seq: 1, last: false, kvRow: kvRow(1, 1) },
      { id: 0, slot: 1, pos: 2, seq: 2, last: true, kvRow: kvRow(1, 2) },
      { id: 0, slot: 0, pos: 2999, seq: 0, last: true, kvRow: kvRow(0, 2999) },
      { id: 0, slot: 0, pos: 1777, seq: 0, last: true, kvRow: kvRow(0, 1777) },
    ];
    const n = toks.length;
    const q = randomArray(n * qDim, 11);
    const k = randomArray(n * kvDim, 12);
    const v = randomArray(n * kvDim, 13);
    const norms = randomArray(2 * c.headDim, 14, 0.3, 1);
    const freqs = ropeFrequencies(c.rope, c.divisors);
    const qb = buffer("q", q);
    const kb = buffer("k", k);
    const vb = buffer("v", v);
    const rowBytes = kvDim * (c.kvF16 ? 2 : 4);
    const rows = slots * pagesPerSlot * pageSize;
    const poolOf = (what: string) =>
      Array.from({ length: pool.bindings }, (_, b) => buffer(`${what} pool ${b}`, Math.min(rowsPerBinding, rows - b * rowsPerBinding) * rowBytes));
    const kc = poolOf("k");
    const vc = poolOf("v");
    const fb = buffer("freqs", ropeFreqTable(freqs));
    const nb = buffer("norms", norms);
    const tb = tokenTable(toks);
    const info = stepInfos([record(n)]);
    const kernel = new RopeKernel(ctx, {
      headDim: c.headDim,
      nHeads,
      nKvHeads,
      ropeDims: c.rope.dims,
      neox: c.rope.layout === "neox",
      pool,
      kvF16: c.kvF16,
      qkNormEps: c.qkNorm ? eps : null,
    });
    await kernel.prepare();
    await run("rope", (step) => {
      const group = kernel.bind({ q: qb, k: kb, v: vb, kPool: kc, vPool: vc, freqs: fb, tokens: tb, step: stepInfoBinding(info, 0, slotBytes), norms: c.qkNorm ? nb : undefined });
      kernel.record(step, group, n);
    });
    const qOut = await readF32(qb, n * qDim);
    const kRow = async (slot: number, pos: number, buffers: GPUBuffer[]) => {
      const row = kvRow(slot, pos);
      const cache = buffers[Math.floor(row / rowsPerBinding)]!;
      const first = (row % rowsPerBinding) * kvDim;
      if (!c.kvF16) return readF32(cache, kvDim, first);
      const words = await readU32(cache, kvDim / 2, first / 2);
      const halves = new Uint16Array(words.buffer);
      return Float32Array.from(halves, (h) => f16BitsToF32(h));
    };
    // Values are O(1); sin/cos of an angle reduced to [-π, π] in f32 are within ~1e-6 and
    // the angle itself within ~1e-5 turns at pos 3000, so 1e-4 bounds the rotation error.
    // The f16 cache adds its rounding: a relative 2^-11.
    const tol = c.kvF16 ? 2e-3 : 1e-4;
    for (let t = 0; t < n; t++) {
      const { slot, pos } = toks[t]!;
      for (let h = 0; h < nHeads; h++) {
        let head = Float64Array.from(q.subarray(t * qDim + h * c.headDim, t * qDim + (h + 1) * c.headDim));
        if (c.qkNorm) head = cpuHeadNorm(Float32Array.from(head), norms.subarray(0, c.headDim), eps);
        const want = cpuRope(head, c.rope, freqs, pos);
        assertClose(`q token ${t} head ${h}`, qOut.subarray(t * qDim + h * c.headDim, t * qDim + (h + 1) * c.headDim), want, 1e-4, 2);
      }
      const kGot = await kRow(slot, pos, kc);
      const vGot = await kRow(slot, pos, vc);
      for (let h = 0; h < nKvHeads; h++) {
        let head = Float64Array.from(k.subarray(t * kvDim + h * c.headDim, t * kvDim + (h + 1) * c.headDim));
        if (c.qkNorm) head = cpuHeadNorm(Float32Array.from(head), norms.subarray(c.headDim), eps);
        const want = cpuRope(head, c.rope, freqs, pos);
        assertClose(`k cache slot ${slot} pos ${pos} head ${h}`, kGot.subarray(h * c.headDim, (h + 1) * c.headDim), want, tol, 2);
      }
      assertClose(`v cache slot ${slot} pos ${pos}`, vGot, v.subarray(t * kvDim, (t + 1) * kvDim), c.kvF16 ? 1e-3 : 0);
    }
    destroyAll(qb, kb, vb, ...kc, ...vc, fb, nb, tb, info);
  });
}

// ---------------------------------------------------------------------------------------
// Attention.

interface AttentionCase {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly kvF16: boolean;
}

for (const c of [
  { nHeads: 6, nKvHeads: 2, headDim: 48, kvF16: false },
  { nHeads: 8, nKvHeads: 1, headDim: 80, kvF16: false },
  { nHeads: 4, nKvHeads: 4, headDim: 130, kvF16: true },
] satisfies AttentionCase[]) {
  const name = `${c.nHeads} heads / ${c.nKvHeads} KV heads, head dim ${c.headDim}, ${c.kvF16 ? "f16" : "f32"} cache`;
  Deno.test(`attention, prefill and decode over contexts longer than a tile: ${name}`, async () => {
    const ctxLen = 300;
    const slots = 3;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKvHeads * c.headDim;
    // A pool of 16-position pages, each slot's in scrambled order: position p of slot s is
    // pool row tables[s][p / 16]·16 + p % 16. The pool holds random keys and values in
    // every row; each token attends to [0, pos] of its own slot through its table.
    const pageSize = 16;
    const pagesPerSlot = Math.ceil(ctxLen / pageSize);
    const tables = scrambledPageTables(slots, pagesPerSlot, 7);
    const poolRows = slots * pagesPerSlot * pageSize;
    const rowOf = (slot: number, pos: number) => tables[slot]![Math.floor(pos / pageSize)]! * pageSize + (pos % pageSize);
    const pageTable = buffer("page tables", Uint32Array.from(tables.flat()));
    // Prefill of slot 2 at 0..3, a decode at 299 in slot 0 (five
    // 64-position tiles), one at 64 (a tile plus one) and one at 130 in slot 1.
    const toks: TokenRecord[] = [
      { id: 0, slot: 2, pos: 0, seq: 0, last: false, kvRow: rowOf(2, 0) },
      { id: 0, slot: 2, pos: 1, seq: 1, last: false, kvRow: rowOf(2, 1) },
      { id: 0, slot: 2, pos: 2, seq: 2, last: false, kvRow: rowOf(2, 2) },
      { id: 0, slot: 2, pos: 3, seq: 3, last: true, kvRow: rowOf(2, 3) },
      { id: 0, slot: 0, pos: 299, seq: 0, last: true, kvRow: rowOf(0, 299) },
      { id: 0, slot: 1, pos: 64, seq: 0, last: true, kvRow: rowOf(1, 64) },
      { id: 0, slot: 1, pos: 130, seq: 0, last: true, kvRow: rowOf(1, 130) },
    ];
    const n = toks.length;
    // Scores of a few units, so the softmax is neither flat nor one-hot.
    let kCache = randomArray(poolRows * kvDim, 21, 1.5);
    let vCache = randomArray(poolRows * kvDim, 22);
    if (c.kvF16) {
      kCache = f16Round(kCache);
      vCache = f16Round(vCache);
    }
    const q = randomArray(n * qDim, 23, 1.5);
    const qb = buffer("q", q);
    const kWords = c.kvF16 ? f16Pack(kCache) : kCache;
    const vWords = c.kvF16 ? f16Pack(vCache) : vCache;
    const rowWords = (kvDim * (c.kvF16 ? 2 : 4)) / 4;
    const out = buffer("out", n * qDim * 4);
    const tb = tokenTable(toks);
    const info = stepInfos([record(n)]);
    const checkAttention = (got: Float32Array, label: string) => {
      const group = c.nHeads / c.nKvHeads;
      for (let t = 0; t < n; t++) {
        const { slot, pos } = toks[t]!;
        for (let h = 0; h < c.nHeads; h++) {
          const kvOff = Math.floor(h / group) * c.headDim;
          const scores = new Float64Array(pos + 1);
          for (let j = 0; j <= pos; j++) {
            let dot = 0;
            for (let d = 0; d < c.headDim; d++) dot += q[t * qDim + h * c.headDim + d]! * kCache[rowOf(slot, j) * kvDim + kvOff + d]!;
            scores[j] = dot / Math.sqrt(c.headDim);
          }
          const max = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - max));
          const total = e.reduce((a, b) => a + b, 0);
          const want = new Float64Array(c.headDim);
          for (let j = 0; j <= pos; j++) {
            for (let d = 0; d < c.headDim; d++) want[d] += (e[j]! / total) * vCache[rowOf(slot, j) * kvDim + kvOff + d]!;
          }
          // Outputs are weighted means of values in [-1, 1]; f32 exp and sums over ≤300
          // positions drift by ~1e-6.
          assertClose(`${label}: token ${t} (slot ${slot}, pos ${pos}) head ${h}`, got.subarray(t * qDim + h * c.headDim, t * qDim + (h + 1) * c.headDim), want, 2e-5);
        }
      }
    };
    // The pool in one binding, and over 3 (20 pages each, the last 17).
    const layouts = [
      { pageSize, rowsPerBinding: poolRows, bindings: 1 },
      { pageSize, rowsPerBinding: 20 * pageSize, bindings: 3 },
    ];
    // Unsplit; split in spans of a tile (300 keys → 5 work-groups per token); split in
    // uneven spans of at most 16 (300 keys → 19 spans, capped at 13 → spans of 24, the
    // last short, and tokens at pos 0..3 with some spans empty).
    const cases = [{}, { splitTokens: n }, { splitTokens: n, minSpan: 16, maxSplits: 13 }].flatMap((split) => layouts.map((pool) => ({ split, pool })));
    for (const { split, pool } of cases) {
      const key = { headDim: c.headDim, nHeads: c.nHeads, nKvHeads: c.nKvHeads, maxPages: pagesPerSlot, pool, kvF16: c.kvF16 };
      const kc = poolBuffers("k pool", kWords, poolRows, rowWords, pool.rowsPerBinding);
      const vc = poolBuffers("v pool", vWords, poolRows, rowWords, pool.rowsPerBinding);
      assert.equal(kc.length, pool.bindings);
      const kernel = new AttentionKernel(ctx, key, split);
      assert.equal(kernel.headsPerWorkgroup, headsPerWorkgroup(kernel.key));
      const splits = kernel.splitCount(n, 300);
      assert.equal(splits, split.splitTokens === undefined ? 1 : split.minSpan === 16 ? 13 : 5);
      await kernel.prepare();
      const scratch = kernel.scratchBytes > 0 ? buffer("scratch", kernel.scratchBytes) : undefined;
      const binding = stepInfoBinding(info, 0, slotBytes);
      ctx.allocator.writeBuffer(out, 0, new Float32Array(n * qDim).fill(NaN)); // nothing left from the last run
      const label = `${splits} split(s), ${pool.bindings} binding(s)`;
      await run(`attention, ${label}`, (step) => {
        kernel.record(step, kernel.bind({ q: qb, kPool: kc, vPool: vc, pageTable, out, tokens: tb, step: binding, scratch }), n, 300);
      });
      const got = await readF32(out, n * qDim);
      if (scratch) destroyAll(scratch);
      destroyAll(...kc, ...vc);
      checkAttention(got, label);
    }
    destroyAll(qb, pageTable, out, tb, info);
  });
}

// ---------------------------------------------------------------------------------------
// Element-wise.

Deno.test("swiglu and residual add (width 333, 3 tokens of 4 allocated)", async () => {
  const width = 333;
  const n = 3;
  const gate = randomArray(4 * width, 31, 8); // up to ±8: exp(-g) spans 3e-4..3e3
  const up = randomArray(4 * width, 32, 2);
  const a = buffer("gate", gate);
  const b = buffer("up", up);
  const info = stepInfos([record(n)]);
  const swiglu = new ElementwiseKernel(ctx, { op: "swiglu", width });
  const add = new ElementwiseKernel(ctx, { op: "add", width });
  await Promise.all([swiglu.prepare(), add.prepare()]);
  await run("swiglu", (step) => swiglu.record(step, swiglu.bind({ a, b, step: stepInfoBinding(info, 0, slotBytes) }), n));
  const s = await readF32(a, 4 * width);
  const want = Float64Array.from(gate, (g, i) => (i < n * width ? (g / (1 + Math.exp(-g))) * up[i]! : g));
  // |silu(g)·u| ≤ 16; f32 exp/division are within a few ulps.
  assertClose("swiglu", s, want, 1e-6, 16);
  await run("add", (step) => add.record(step, add.bind({ a, b, step: stepInfoBinding(info, 0, slotBytes) }), n));
  const sum = await readF32(a, 4 * width);
  assertClose("add", sum, Float64Array.from(s, (v, i) => (i < n * width ? v + up[i]! : v)), 1e-6, 16);
  destroyAll(a, b, info);
});

// ---------------------------------------------------------------------------------------
// Embedding.

const EMBEDDING_TYPES = [
  GGMLType.F32,
  GGMLType.F16,
  GGMLType.BF16,
  GGMLType.Q8_0,
  GGMLType.Q4_0,
  GGMLType.Q4_1,
  GGMLType.Q5_0,
  GGMLType.Q5_1,
  GGMLType.Q2_K,
  GGMLType.Q3_K,
  GGMLType.Q4_K,
  GGMLType.Q5_K,
  GGMLType.Q6_K,
];

Deno.test("embedding lookup for every GPU weight type, ids from the table and from lastSampled, split tables", async () => {
  const vocab = 37;
  const lastSampled = buffer("last sampled", Int32Array.from([36, 5, -1]));
  for (const [i, type] of EMBEDDING_TYPES.entries()) {
    const kquant = [GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K].includes(type);
    const float = [GGMLType.F32, GGMLType.F16, GGMLType.BF16].includes(type);
    const cols = kquant ? 256 : float ? 40 : 96; // 40: float rows padded to 48 on the GPU
    const bytes = quantize(type, randomArray(vocab * cols, 40 + i));
    const table = dequantize(type, bytes, vocab * cols);
    // Parts of ~6 rows, so lookups cross part boundaries.
    const rowBytes = bytes.byteLength / vocab;
    const weight = await uploadWeight(ctx, { type, shape: [cols, vocab], bytes }, `embd ${ggmlTypeName(type)}`, { maxPartBytes: Math.ceil(rowBytes * 6.5) + 64 });
    assert.ok(weight.parts.length >= 4, `${ggmlTypeName(type)}: ${weight.parts.length} parts`);
    const toks: TokenRecord[] = [
      { id: 3, slot: 2, pos: 0, seq: 0, last: false, kvRow: 0 },
      { id: 0, slot: 2, pos: 1, seq: 1, last: false, kvRow: 0 },
      { id: FROM_LAST_SAMPLED, slot: 0, pos: 7, seq: 0, last: true, kvRow: 0 },
      { id: 30, slot: 2, pos: 2, seq: 2, last: true, kvRow: 0 },
      { id: FROM_LAST_SAMPLED, slot: 1, pos: 4, seq: 0, last: true, kvRow: 0 },
    ];
    const ids = [3, 0, 36, 30, 5];
    const tb = tokenTable([{ id: 9, slot: 0, pos: 0, seq: 0, last: true, kvRow: 0 }, ...toks]); // a record before this sub-step's
    const info = stepInfos([record(toks.length, 1)]);
    const x = buffer("x", toks.length * cols * 4);
    const kernel = new EmbeddingKernel(ctx, weight);
    await kernel.prepare();
    await run("embedding", (step) => kernel.record(step, kernel.bind({ tokens: tb, lastSampled, x, step: stepInfoBinding(info, 0, slotBytes) }), toks.length));
    const got = await readF32(x, toks.length * cols);
    // The GPU decodes the same bits; only f32 rounding of d·q (+m) may differ.
    ids.forEach((id, t) => {
      assertClose(`${ggmlTypeName(type)} token ${t} (id ${id})`, got.subarray(t * cols, (t + 1) * cols), table.subarray(id * cols, (id + 1) * cols), 1e-6, 2);
    });
    kernel.destroy();
    destroyWeight(ctx.allocator, weight);
    destroyAll(tb, info, x);
  }
  destroyAll(lastSampled);
});

// ---------------------------------------------------------------------------------------
// Greedy sampling.

Deno.test("greedy sampler: first index of the largest logit per row, to outIds and lastSampled", async () => {
  const vocab = 1001;
  const rows = 4;
  const logits = randomArray(rows * vocab, 51, 5);
  logits[0 * vocab + 1000] = 9; // the last index
  logits[1 * vocab + 17] = 9; // a tie: 17 wins over 600
  logits[1 * vocab + 600] = 9;
  logits[2 * vocab + 0] = 9; // the first index
  const lb = buffer("logits", logits);
  const rowView = new DataView(new ArrayBuffer(rows * SAMPLE_ROW_BYTES));
  const slots = [2, 0, 3, 1];
  const outIndex = [5, 1, 0, 3];
  slots.forEach((slot, r) => writeSampleRow(rowView, r * SAMPLE_ROW_BYTES, sampleRowOf(GREEDY, slot, r, outIndex[r]!)));
  const rowParams = buffer("row params", rowView);
  const outIds = buffer("out ids", Int32Array.from({ length: 6 }, () => -7));
  const last = buffer("last sampled", Int32Array.from([-1, -1, -1, -1, 99]));
  const history = buffer("history", 16);
  const sampler = await createDeviceSampler(ctx, { vocabSize: vocab, maxRows: rows });
  await run("argmax", (step) => sampler.record(step.computePass(), { logits: lb, rows, rowParams, history, lastSampled: last, outIds }));
  const want = Array.from({ length: rows }, (_, r) => {
    let best = 0;
    for (let i = 1; i < vocab; i++) if (logits[r * vocab + i]! > logits[r * vocab + best]!) best = i;
    return best;
  });
  assert.deepEqual(want.slice(0, 3), [1000, 17, 0]);
  const ids = new Int32Array(await ctx.allocator.readBuffer(outIds, 0, 24));
  const lastIds = new Int32Array(await ctx.allocator.readBuffer(last, 0, 20));
  const wantOut = [-7, -7, -7, -7, -7, -7];
  const wantLast = [-1, -1, -1, -1, 99];
  want.forEach((id, r) => {
    wantOut[outIndex[r]!] = id;
    wantLast[slots[r]!] = id;
  });
  assert.deepEqual([...ids], wantOut);
  assert.deepEqual([...lastIds], wantLast);
  destroyAll(lb, rowParams, outIds, last, history);
});

// ---------------------------------------------------------------------------------------
// Penalty history.

Deno.test("history ring: appends in order per slot, resolves lastSampled, wraps at HISTORY_CAP", async () => {
  const slots = 3;
  const history = createHistoryBuffer(ctx, slots);
  const last = buffer("last sampled", Int32Array.from([70, 71, 72]));
  // Slot 2 starts near the end of its ring, so its appends wrap.
  ctx.allocator.writeBuffer(history, 2 * HISTORY_SLOT_WORDS * 4, Uint32Array.from([HISTORY_CAP - 2]));
  const sub0: TokenRecord[] = [
    { id: 10, slot: 1, pos: 0, seq: 0, last: false, kvRow: 0 },
    { id: 11, slot: 1, pos: 1, seq: 1, last: false, kvRow: 0 },
    { id: 12, slot: 1, pos: 2, seq: 2, last: true, kvRow: 0 },
    { id: FROM_LAST_SAMPLED, slot: 0, pos: 5, seq: 0, last: true, kvRow: 0 },
    { id: 20, slot: 2, pos: 9, seq: 0, last: false, kvRow: 0 },
    { id: 21, slot: 2, pos: 10, seq: 1, last: false, kvRow: 0 },
    { id: 22, slot: 2, pos: 11, seq: 2, last: true, kvRow: 0 },
  ];
  const sub1: TokenRecord[] = [
    { id: FROM_LAST_SAMPLED, slot: 1, pos: 3, seq: 0, last: true, kvRow: 0 },
    { id: FROM_LAST_SAMPLED, slot: 2, pos: 12, seq: 0, last: true, kvRow: 0 },
  ];
  const tb = tokenTable([...sub0, ...sub1]);
  const info = stepInfos([record(sub0.length, 0), record(sub1.length, sub0.length)]);
  const kernel = new HistoryKernel(ctx);
  await kernel.prepare();
  await run("history", (step) => {
    kernel.record(step, kernel.bind({ tokens: tb, lastSampled: last, history, step: stepInfoBinding(info, 0, slotBytes) }));
    kernel.record(step, kernel.bind({ tokens: tb, lastSampled: last, history, step: stepInfoBinding(info, 1, slotBytes) }));
  });
  const words = await readU32(history, slots * HISTORY_SLOT_WORDS);
  const slot = (s: number) => words.subarray(s * HISTORY_SLOT_WORDS, (s + 1) * HISTORY_SLOT_WORDS);
  assert.equal(slot(0)[0], 1);
  assert.equal(slot(0)[1], 70);
  assert.equal(slot(1)[0], 4);
  assert.deepEqual([...slot(1).subarray(1, 5)], [10, 11, 12, 71]);
  assert.equal(slot(2)[0], HISTORY_CAP + 2);
  // Tokens n = CAP-2, CAP-1 at the ring's end; n = CAP, CAP+1 wrap to its start.
  assert.deepEqual([slot(2)[HISTORY_CAP - 1], slot(2)[HISTORY_CAP], slot(2)[1], slot(2)[2]], [20, 21, 22, 72]);
  resetHistorySlot(ctx, history, 1);
  assert.equal((await readU32(history, 1, HISTORY_SLOT_WORDS))[0], 0);
  destroyAll(history, last, tb, info);
});

Deno.test("op kernels leave no buffers behind", async () => {
  arena.destroy();
  ctx.check();
  assert.equal(ctx.allocator.liveBuffers, 0);
  assert.equal(ctx.allocator.liveBytes, 0);
  await ctx.destroy();
});

