/**
 * The kernels the gemma and phi families need, on the GPU against their CPU twins in
 * src/model/reference-ops.ts (written from llama.cpp's formulas, in f64): GeGLU and the
 * final-logit soft-cap; attention with a given scale, a score soft-cap and a sliding window
 * (prefill, split decode, paged pool over several bindings); RoPE of part of each head with
 * LongRoPE divisors, an attention factor and a per-layer base; and products over a row
 * range of a fused weight, read in place.
 * Run: deno test -A test/deno/gpu-ops-families.test.ts   (lavapipe here; any WebGPU adapter works)
 */
import assert from "node:assert/strict";
import { GGMLType, ggmlTypeName } from "../../src/gguf/ggml-type.ts";
import { dequantize, f16BitsToF32, f32ToF16Bits, quantize } from "../../src/gguf/quant/index.ts";
import { createGpuContext } from "../../src/gpu/device.ts";
import { AttentionKernel } from "../../src/gpu/kernels/attention.ts";
import { ElementwiseKernel } from "../../src/gpu/kernels/elementwise.ts";
import { MatrixKernels, weightRows } from "../../src/gpu/kernels/matmul.ts";
import { RmsNormKernel } from "../../src/gpu/kernels/rmsnorm.ts";
import { RopeKernel, ropeFreqTable } from "../../src/gpu/kernels/rope.ts";
import { type StepInfo, stepInfoBinding, TOKEN_RECORD_BYTES, type TokenRecord, writeStepInfo, writeTokenRecord } from "../../src/gpu/kernels/tokens.ts";
import { GpuStep, ParamArena } from "../../src/gpu/step.ts";
import { destroyWeight, uploadWeight } from "../../src/gpu/weights.ts";
import type { RopeConfig } from "../../src/model/config.ts";
import { ropeFrequencies } from "../../src/model/reference-rope.ts";
import { dawnIcd, primeDawn } from "../node/dawn/dawn-env.ts";
import { attendHead, type AttentionScoring, geglu, longRopeDivisors, rotateHead, softcap, windowStart } from "../../src/model/reference-ops.ts";
import { assertClose } from "./support/assert-close.ts";

const ctx = await createGpuContext();
const slotBytes = ctx.limits.minUniformBufferOffsetAlignment;
const arena = new ParamArena(ctx.allocator, slotBytes);

// ---------------------------------------------------------------------------------------
// Helpers.

/** Deterministic uniform numbers in [-1, 1) (mulberry32). */
function randomArray(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
  return Float32Array.from({ length: n }, () => next() * scale);
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

function buffer(label: string, data: ArrayBufferView | number): GPUBuffer {
  const size = typeof data === "number" ? data : data.byteLength;
  const b = ctx.allocator.createBuffer({ label, size: Math.max(16, size), usage: STORAGE });
  if (typeof data !== "number") ctx.allocator.writeBuffer(b, 0, data);
  return b;
}

function stepInfo(info: StepInfo): GPUBufferBinding {
  const view = new DataView(new ArrayBuffer(slotBytes));
  writeStepInfo(view, 0, info);
  const b = ctx.allocator.createBuffer({ label: "step info", size: slotBytes, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  ctx.allocator.writeBuffer(b, 0, view);
  return stepInfoBinding(b, 0, slotBytes);
}

function tokenTable(records: readonly TokenRecord[]): GPUBuffer {
  const view = new DataView(new ArrayBuffer(records.length * TOKEN_RECORD_BYTES));
  records.forEach((r, i) => writeTokenRecord(view, i, r));
  return buffer("tokens", view);
}

async function run(label: string, body: (step: GpuStep) => void): Promise<void> {
  const step = new GpuStep(ctx, arena, label);
  body(step);
  step.submit();
  await ctx.finish();
}

async function readF32(b: GPUBuffer, count: number, offset = 0): Promise<Float32Array> {
  return new Float32Array(await ctx.allocator.readBuffer(b, offset * 4, count * 4));
}

function destroyAll(...buffers: (GPUBuffer | GPUBufferBinding)[]): void {
  for (const b of buffers) ctx.allocator.destroy("buffer" in b ? b.buffer : b);
}

// ---------------------------------------------------------------------------------------
// GeGLU and the logit soft-cap.

Deno.test("geglu over the step's tokens, softcap over its logit rows (width 333)", async () => {
  const width = 333;
  // Gates up to ±12 cross GELU's ±10 range; logits up to ±200 saturate a cap of 30.
  const gate = randomArray(4 * width, 41, 12);
  const up = randomArray(4 * width, 42, 2);
  const logits = randomArray(3 * width, 43, 200);
  const a = buffer("gate", gate);
  const b = buffer("up", up);
  const l = buffer("logits", logits);
  const info = stepInfo({ nTokens: 3, tokenBase: 0, nRows: 2, rowBase: 0 });
  const gegluKernel = new ElementwiseKernel(ctx, { op: "geglu", width });
  const capKernel = new ElementwiseKernel(ctx, { op: "softcap", width, cap: 30 });
  await Promise.all([gegluKernel.prepare(), capKernel.prepare()]);
  await run("geglu + softcap", (step) => {
    gegluKernel.record(step, gegluKernel.bind({ a, b, step: info }), 3);
    capKernel.record(step, capKernel.bind({ a: l, step: info }), 2);
  });
  const wantGate = gate.slice();
  geglu(wantGate.subarray(0, 3 * width), up);
  const wantLogits = logits.slice();
  softcap(wantLogits, 30, 2 * width);
  // |gelu(g)·u| ≤ 24; f32 tanh and products are within a few ulps. The fourth token and
  // the third logit row are outside the step and stay as they were.
  assertClose("geglu", await readF32(a, 4 * width), wantGate, 2e-6, 24);
  assertClose("softcap", await readF32(l, 3 * width), wantLogits, 2e-6, 30);
  assert.throws(() => new ElementwiseKernel(ctx, { op: "softcap", width, cap: 0 }), /finite cap > 0/);
  destroyAll(a, b, l, info);
});

// ---------------------------------------------------------------------------------------
// Attention: scale, soft-cap, sliding window.

interface WindowCase {
  readonly window: number;
  readonly scoring: Omit<AttentionScoring, "window">;
  readonly kvF16: boolean;
}

const WINDOW_CASES: readonly WindowCase[] = [
  // gemma2-like: its own scale and a cap the scores reach (q·k up to ~±20 before the cap).
  { window: 50, scoring: { scale: 0.3, softcap: 5 }, kvF16: false },
  // A window wider than a 64-position tile, default scale, f16 cache.
  { window: 100, scoring: { scale: 1 / Math.sqrt(48) }, kvF16: true },
];

for (const c of WINDOW_CASES) {
  const name = `window ${c.window}, scale ${c.scoring.scale.toFixed(3)}${c.scoring.softcap ? `, softcap ${c.scoring.softcap}` : ""}, ${c.kvF16 ? "f16" : "f32"} cache`;
  Deno.test(`attention reads only the window: ${name} (prefill, decode, split, 2 bindings)`, async () => {
    const nHeads = 4;
    const nKvHeads = 2;
    const headDim = 48;
    const kvDim = nKvHeads * headDim;
    const qDim = nHeads * headDim;
    const ctxLen = 320;
    const pageSize = 16;
    const slots = 3;
    const pagesPerSlot = ctxLen / pageSize;
    // Each slot's pages in reverse order in the pool, so neighbouring positions sit apart.
    const tables = Array.from({ length: slots }, (_, s) => Array.from({ length: pagesPerSlot }, (_, p) => s * pagesPerSlot + pagesPerSlot - 1 - p));
    const rowOf = (slot: number, pos: number) => tables[slot]![Math.floor(pos / pageSize)]! * pageSize + (pos % pageSize);
    const poolRows = slots * pagesPerSlot * pageSize;
    const toks: TokenRecord[] = [
      ...[0, 1, 2, 3].map((pos) => ({ id: 0, slot: 2, pos, seq: pos, last: pos === 3, kvRow: rowOf(2, pos) })),
      { id: 0, slot: 0, pos: 299, seq: 0, last: true, kvRow: rowOf(0, 299) },
      { id: 0, slot: 1, pos: 130, seq: 0, last: true, kvRow: rowOf(1, 130) },
    ];
    const n = toks.length;
    const q = randomArray(n * qDim, 51, 1.5);
    // Keys and values: random where some token of the slot may read them, NaN elsewhere
    // (before the earliest window start of the slot's tokens, after its latest position), so
    // that one read outside the windows turns an output into NaN.
    const round = (v: number) => (c.kvF16 ? f16BitsToF32(f32ToF16Bits(v)) : v);
    const keys = randomArray(poolRows * kvDim, 52, 1.5).map(round);
    const values = randomArray(poolRows * kvDim, 53).map(round);
    for (let slot = 0; slot < slots; slot++) {
      const mine = toks.filter((t) => t.slot === slot);
      const from = Math.min(...mine.map((t) => windowStart(t.pos, c.window)));
      const to = Math.max(...mine.map((t) => t.pos));
      for (let pos = 0; pos < ctxLen; pos++) {
        if (pos >= from && pos <= to) continue;
        keys.fill(NaN, rowOf(slot, pos) * kvDim, (rowOf(slot, pos) + 1) * kvDim);
        values.fill(NaN, rowOf(slot, pos) * kvDim, (rowOf(slot, pos) + 1) * kvDim);
      }
    }
    const scoring: AttentionScoring = { ...c.scoring, window: c.window };
    const want = new Float32Array(n * qDim);
    const scores = new Float32Array(ctxLen);
    toks.forEach((t, i) => {
      for (let h = 0; h < nHeads; h++) {
        const kvOff = Math.floor(h / (nHeads / nKvHeads)) * headDim;
        const at = (cache: Float32Array) => (p: number) => cache.subarray(rowOf(t.slot, p) * kvDim + kvOff, rowOf(t.slot, p) * kvDim + kvOff + headDim);
        const head = (a: Float32Array) => a.subarray(i * qDim + h * headDim, i * qDim + (h + 1) * headDim);
        attendHead(head(want), head(q), at(keys), at(values), t.pos, scoring, scores);
      }
    });
    const pack = (a: Float32Array) => (c.kvF16 ? new Uint32Array(Uint16Array.from(a, (v) => f32ToF16Bits(v)).buffer) : a);
    const rowsPerBinding = 30 * pageSize;
    const pool = { pageSize, rowsPerBinding, bindings: 2 };
    const rowWords = c.kvF16 ? kvDim / 2 : kvDim;
    const split = (words: Float32Array | Uint32Array) => [0, 1].map((b) => buffer(`pool ${b}`, words.slice(b * rowsPerBinding * rowWords, (b + 1) * rowsPerBinding * rowWords)));
    const kPool = split(pack(keys));
    const vPool = split(pack(values));
    const qb = buffer("q", q);
    const out = buffer("out", n * qDim * 4);
    const tb = tokenTable(toks);
    const pageTable = buffer("page tables", Uint32Array.from(tables.flat()));
    const info = stepInfo({ nTokens: n, tokenBase: 0, nRows: 0, rowBase: 0 });
    const key = { headDim, nHeads, nKvHeads, maxPages: pagesPerSlot, pool, kvF16: c.kvF16, ...scoring };
    // Unsplit, and split into spans of 16 positions (the window's keys over 4 to 7 work-groups).
    for (const options of [{}, { splitTokens: n, minSpan: 16, maxSplits: 13 }]) {
      const kernel = new AttentionKernel(ctx, key, options);
      const splits = kernel.splitCount(n, 300);
      assert.equal(splits, "splitTokens" in options ? Math.ceil(c.window / 16) : 1, "the window bounds the split count");
      await kernel.prepare();
      const scratch = kernel.scratchBytes > 0 ? buffer("scratch", kernel.scratchBytes) : undefined;
      await run(`attention ${splits} split(s)`, (step) => {
        kernel.record(step, kernel.bind({ q: qb, kPool, vPool, pageTable, out, tokens: tb, step: info, scratch }), n, 300);
      });
      // Weighted means of values in [-1, 1]; f32 exp, tanh and sums over ≤ 100 keys drift
      // by ~1e-6, and the f16 cache's values are the same rounded ones on both sides.
      assertClose(`${splits} split(s)`, await readF32(out, n * qDim), want, 2e-5);
      if (scratch) destroyAll(scratch);
    }
    assert.throws(() => new AttentionKernel(ctx, { ...key, window: 0 }), /window must be a whole number/);
    destroyAll(...kPool, ...vPool, qb, out, tb, pageTable, info);
  });
}

// ---------------------------------------------------------------------------------------
// RoPE: partial rotary, LongRoPE divisors and attention factor, per-layer base.

Deno.test("rope: neox over 24 of 40 dims with LongRoPE factors and attention factor; a second base on the same variant", async () => {
  const headDim = 40;
  const dims = 24;
  const nHeads = 3;
  const nKvHeads = 1;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const attnFactor = 1.1902380714238083; // Phi-3.5-mini's sqrt(1 + ln(32) / ln(4096))
  const factors = { long: Float32Array.from({ length: dims / 2 }, (_, i) => 1 + i * 0.9), short: Float32Array.from({ length: dims / 2 }, (_, i) => 1 + i * 0.05) };
  const pool = { pageSize: 16, rowsPerBinding: 64, bindings: 1 };
  const toks: TokenRecord[] = [0, 7, 33, 63].map((pos, i) => ({ id: 0, slot: 0, pos, seq: i, last: i === 3, kvRow: pos }));
  const n = toks.length;
  const kernel = new RopeKernel(ctx, { headDim, nHeads, nKvHeads, ropeDims: dims, neox: true, pool, kvF16: false, qkNormEps: null, attnFactor });
  await kernel.prepare();
  const info = stepInfo({ nTokens: n, tokenBase: 0, nRows: 0, rowBase: 0 });
  const tb = tokenTable(toks);
  // A context above the original picks the long factors; the local layer of gemma3 uses
  // base 10,000 where the global one has the file's 1e6: the same variant, another table.
  const layers = [
    { rope: { layout: "neox", base: 10000, dims, scaling: { type: "none" } }, divisors: longRopeDivisors(factors, 8192, 4096) },
    { rope: { layout: "neox", base: 1e6, dims, scaling: { type: "none" } }, divisors: longRopeDivisors(factors, 2048, 4096) },
  ] satisfies { rope: RopeConfig; divisors: Float32Array }[];
  assert.equal(layers[0].divisors, factors.long);
  assert.equal(layers[1].divisors, factors.short);
  for (const [l, layer] of layers.entries()) {
    const q = randomArray(n * qDim, 61 + l);
    const k = randomArray(n * kvDim, 63 + l);
    const v = randomArray(n * kvDim, 65 + l);
    const qb = buffer("q", q);
    const kb = buffer("k", k);
    const vb = buffer("v", v);
    const kc = buffer("k pool", 64 * kvDim * 4);
    const vc = buffer("v pool", 64 * kvDim * 4);
    const freqs = ropeFrequencies(layer.rope, layer.divisors);
    const fb = buffer("freqs", ropeFreqTable(freqs));
    await run(`rope layer ${l}`, (step) => {
      kernel.record(step, kernel.bind({ q: qb, k: kb, v: vb, kPool: [kc], vPool: [vc], freqs: fb, tokens: tb, step: info }), n);
    });
    const qGot = await readF32(qb, n * qDim);
    const rotation = { dims, layout: "neox", attnFactor } as const;
    for (const [t, { pos }] of toks.entries()) {
      const angles = freqs.map((f) => pos * f);
      for (let h = 0; h < nHeads; h++) {
        const want = q.slice(t * qDim + h * headDim, t * qDim + (h + 1) * headDim);
        rotateHead(want, angles, rotation);
        // |values| ≤ 1.2·√2; angles within ~1e-5 turns at pos 63 (see rope.wgsl).
        assertClose(`layer ${l} q token ${t} head ${h}`, qGot.subarray(t * qDim + h * headDim, t * qDim + (h + 1) * headDim), want, 1e-4, 2);
      }
      const want = k.slice(t * kvDim, (t + 1) * kvDim);
      rotateHead(want, angles, rotation);
      assertClose(`layer ${l} k cache pos ${pos}`, await readF32(kc, kvDim, pos * kvDim), want, 1e-4, 2);
      assertClose(`layer ${l} v cache pos ${pos}`, await readF32(vc, kvDim, pos * kvDim), v.subarray(t * kvDim, (t + 1) * kvDim), 0);
    }
    destroyAll(qb, kb, vb, kc, vc, fb);
  }
  destroyAll(tb, info);
});

// ---------------------------------------------------------------------------------------
// Row ranges of a fused weight (phi3's attn_qkv), read in place.

/** Types and the columns each kernel shape takes them at (K types: whole super-blocks). */
const FUSED_TYPES: readonly [GGMLType, number][] = [
  [GGMLType.Q8_0, 128], // split-scale layout: the row base moves the scales too
  [GGMLType.Q4_K, 256], // whole blocks
];

Deno.test(`fused weight row ranges (q, k, v of attn_qkv): ${FUSED_TYPES.map(([t]) => ggmlTypeName(t)).join(", ")}, lanes and blocks shapes, split parts, n = 1, 3, 40`, async () => {
  // q = rows [0, 40), k = [40, 56), v = [56, 72); parts of a third of the bytes put part
  // boundaries inside q and inside k.
  const ranges = [[0, 40], [40, 16], [56, 16]] as const;
  const rows = 72;
  // lanes: matvec-lanes (n = 1), matmul-lanes (n ≥ 2); blocks: matvec-blocks (n = 1), the
  // small-batch matvec.wgsl (n = 3), the tiles of matmul.wgsl (n = 40).
  for (const shape of ["lanes", "blocks"] as const) {
    const mk = new MatrixKernels(ctx, { matvecShape: shape });
    for (const [i, [type, cols]] of FUSED_TYPES.entries()) {
      const bytes = quantize(type, randomArray(rows * cols, 70 + i));
      const w = dequantize(type, bytes, rows * cols);
      const fused = await uploadWeight(ctx, { type, shape: [cols, rows], bytes }, `attn_qkv ${ggmlTypeName(type)}`, { maxPartBytes: Math.ceil(bytes.length / 3) });
      assert.ok(fused.parts.length >= 3, "the weight is split into parts");
      const views = ranges.map(([first, count]) => weightRows(fused, first, count));
      for (const n of [1, 3, 40]) {
        const x = randomArray(n * cols, 80 + n);
        const xb = buffer("x", x);
        const whole = buffer("whole", n * rows * 4);
        const parts = views.map((v) => buffer(v.name, n * v.rows * 4));
        await run("fused products", (step) => {
          mk.matmul(step, fused, xb, whole, n);
          views.forEach((v, r) => mk.matmul(step, v, xb, parts[r]!, n));
        });
        const wholeOut = await readF32(whole, n * rows);
        for (const [r, [first, count]] of ranges.entries()) {
          const got = await readF32(parts[r]!, n * count);
          const label = `${shape} ${ggmlTypeName(type)} n=${n} rows [${first}, ${first + count})`;
          // The same kernel over the same rows sums in the same order: equal to the bit.
          const fromWhole = Float32Array.from({ length: n * count }, (_, j) => wholeOut[Math.floor(j / count) * rows + first + (j % count)]!);
          assert.deepEqual(got, fromWhole, `${label}: equals the whole weight's rows`);
          // And against the CPU's dequantized rows in f64, relative to Σ|w·x| (as gpu-matmul).
          for (let m = 0; m < n; m++) {
            for (let j = 0; j < count; j++) {
              let sum = 0;
              let bound = 0;
              for (let kk = 0; kk < cols; kk++) {
                const p = w[(first + j) * cols + kk]! * x[m * cols + kk]!;
                sum += p;
                bound += Math.abs(p);
              }
              assertClose(`${label} [${m}, ${j}]`, [got[m * count + j]!], [sum], 2e-6, bound + 1e-6);
            }
          }
        }
        destroyAll(xb, whole, ...parts);
      }
      assert.throws(() => weightRows(fused, 60, 16), /not a range of them/);
      destroyWeight(ctx.allocator, fused);
    }
    mk.destroy();
  }
});

// ---------------------------------------------------------------------------------------
// Tint (Dawn) compiles the same variants: its WGSL front end is stricter than Naga's.

Deno.test({
  name: "Dawn compiles the family variants (runs when DAWN_VK_ICD is set)",
  ignore: dawnIcd() === undefined,
  async fn() {
    const { gpu } = await primeDawn();
    const dawn = await createGpuContext({ gpu });
    try {
      const pool = { pageSize: 16, rowsPerBinding: 480, bindings: 2 };
      const attention = { headDim: 48, nHeads: 4, nKvHeads: 2, maxPages: 20, pool, kvF16: true, scale: 0.3, softcap: 50, window: 50 };
      await Promise.all([
        new ElementwiseKernel(dawn, { op: "geglu", width: 333 }).prepare(),
        new ElementwiseKernel(dawn, { op: "softcap", width: 333, cap: 30 }).prepare(),
        new AttentionKernel(dawn, attention, { splitTokens: 4 }).prepare(),
        new RopeKernel(dawn, { headDim: 40, nHeads: 3, nKvHeads: 1, ropeDims: 24, neox: true, pool, kvF16: true, qkNormEps: null, attnFactor: 1.19 }).prepare(),
        // olmo2's norms of the whole Q and K projections.
        new RmsNormKernel(dawn, { width: 333, eps: 1e-6, residual: false, gather: false, inPlace: true }).prepare(),
      ]);
    } finally {
      await dawn.destroy();
    }
  },
});
