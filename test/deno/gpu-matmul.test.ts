/**
 * Matrix kernels against a CPU reference, for every GPU weight type.
 * Run: deno test -A test/deno/gpu-matmul.test.ts   (lavapipe here; any WebGPU adapter works)
 * With DAWN_VK_ICD=/usr/lib/chromium/vk_swiftshader_icd.json it also checks the subgroup
 * reductions on Dawn (see test/node/dawn/dawn-env.ts).
 *
 * The reference: weights are quantized on the CPU (src/gguf/quant), dequantized back on the
 * CPU with `dequantize` (bit-exact with GGML), and multiplied in f64. The GPU reads the same
 * quantized bytes, so the only differences are f32 rounding in the GPU's sums and scale
 * products: errors are bounded relative to Σ|w·x| (the sum of absolute products), not to
 * the result, which may cancel to near zero.
 */
import assert from "node:assert/strict";
import { GGMLType, ggmlTypeName } from "../../src/gguf/ggml-type.ts";
import { dequantize, quantize } from "../../src/gguf/quant/index.ts";
import { createGpuContext, type GpuContext } from "../../src/gpu/device.ts";
import { DEFAULT_BATCH_MAX, MatrixKernels, matrixVariant } from "../../src/gpu/kernels/matmul.ts";
import { ParamArena, GpuStep } from "../../src/gpu/step.ts";
import { destroyWeight, uploadWeight, type GpuWeight } from "../../src/gpu/weights.ts";
import { dawnIcd, primeDawn } from "../node/dawn/dawn-env.ts";

/**
 * Allowed |gpu − ref| / Σ|w·x| per type. f32 has 24 bits: sums of up to 512 terms in a
 * different order drift by a few 1e-7 of Σ|w·x| (worst seen here on lavapipe: 2.1e-7 with
 * `GPU_TEST_VERBOSE=1`); the quantized types add one or two f32 products (d·scale,
 * dmin·min) whose rounding differs from the CPU's order of operations, well inside that.
 * 2e-6 leaves a 10× margin while one wrong 4-bit value moves a sum by about 1e-4 of Σ|w·x|.
 */
const TOLERANCE: ReadonlyMap<GGMLType, number> = new Map([
  [GGMLType.F32, 2e-6],
  [GGMLType.F16, 2e-6],
  [GGMLType.BF16, 2e-6],
  [GGMLType.Q8_0, 2e-6],
  [GGMLType.Q4_0, 2e-6],
  [GGMLType.Q4_1, 2e-6],
  [GGMLType.Q5_0, 2e-6],
  [GGMLType.Q5_1, 2e-6],
  [GGMLType.Q2_K, 2e-6],
  [GGMLType.Q3_K, 2e-6],
  [GGMLType.Q4_K, 2e-6],
  [GGMLType.Q5_K, 2e-6],
  [GGMLType.Q6_K, 2e-6],
  [GGMLType.IQ4_NL, 2e-6],
  [GGMLType.IQ4_XS, 2e-6],
]);

/** Awkward sizes: rows not a multiple of the 4 rows per work-group nor of the 64-row tile. */
const ROWS = 37;
const N = 5;

function colsFor(type: GGMLType): number {
  if (type === GGMLType.F32 || type === GGMLType.F16 || type === GGMLType.BF16) return 40; // not a multiple of 16: padded rows
  if ([GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.IQ4_XS].includes(type)) return 512;
  return 96;
}

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

function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const next = random(seed);
  return Float32Array.from({ length: n }, () => next() * scale);
}

interface TestMatrix {
  readonly type: GGMLType;
  readonly rows: number;
  readonly cols: number;
  readonly bytes: Uint8Array;
  /** The CPU's dequantized weights, row-major. */
  readonly values: Float32Array;
}

function makeMatrix(type: GGMLType, rows: number, cols: number, seed: number): TestMatrix {
  const bytes = quantize(type, randomArray(rows * cols, seed));
  return { type, rows, cols, bytes, values: dequantize(type, bytes, rows * cols) };
}

/**
 * For each of n input rows (x[m·xStride + k]) and weight row r: the f64 reference
 * Σ_k w·x (+ bias) and the bound Σ_k |w·x|.
 */
function reference(w: TestMatrix, x: Float32Array, n: number, xStride: number, bias?: Float32Array) {
  const value = new Float64Array(n * w.rows);
  const bound = new Float64Array(n * w.rows);
  for (let m = 0; m < n; m++) {
    for (let r = 0; r < w.rows; r++) {
      let sum = 0;
      let abs = 0;
      for (let k = 0; k < w.cols; k++) {
        const p = w.values[r * w.cols + k] * x[m * xStride + k];
        sum += p;
        abs += Math.abs(p);
      }
      value[m * w.rows + r] = sum + (bias ? bias[r] : 0);
      bound[m * w.rows + r] = abs;
    }
  }
  return { value, bound };
}

function assertClose(
  what: string,
  got: Float32Array,
  ref: { value: Float64Array; bound: Float64Array },
  tolerance: number,
): void {
  assert.equal(got.length, ref.value.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - ref.value[i]) / (ref.bound[i] + 1e-6);
    if (!(err <= tolerance)) {
      assert.fail(`${what}: element ${i} is ${got[i]}, expected ${ref.value[i]} (error ${err.toExponential(2)} of Σ|w·x| ${ref.bound[i].toFixed(3)}, tolerance ${tolerance})`);
    }
    worst = Math.max(worst, err);
  }
  // Keep a record of the margin: a tolerance far above what is seen hides regressions.
  if (Deno.env.get("GPU_TEST_VERBOSE")) console.log(`${what}: worst relative error ${worst.toExponential(2)}`);
}

function f32Buffer(ctx: GpuContext, label: string, data: Float32Array | number): GPUBuffer {
  const length = typeof data === "number" ? data : data.length;
  const buffer = ctx.allocator.createBuffer({
    label,
    size: length * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  if (typeof data !== "number") ctx.allocator.writeBuffer(buffer, 0, data);
  return buffer;
}

async function readF32(ctx: GpuContext, buffer: GPUBuffer, offset: number, length: number): Promise<Float32Array> {
  return new Float32Array(await ctx.allocator.readBuffer(buffer, offset * 4, length * 4));
}

/** Rows [m·stride + offset, +rows) of a flat array, for m < n. */
function gather(data: Float32Array, n: number, offset: number, stride: number, rows: number): Float32Array {
  const out = new Float32Array(n * rows);
  for (let m = 0; m < n; m++) out.set(data.subarray(offset + m * stride, offset + m * stride + rows), m * rows);
  return out;
}

/** How {@link checkProducts} places its operands. */
interface Placement {
  /** Input rows of each matmul (one output buffer each). */
  ns?: readonly number[];
  /** Unused trailing elements: buffers larger than a (forced small) binding limit. */
  pad?: number;
  /**
   * X offset and stride multiples of 4 (the small-batch kernel then reads X as vec4), or
   * odd ones (read as f32).
   */
  alignedX?: boolean;
}

/**
 * Runs, in one step: matvec, matvec + bias, and for each n a matmul + bias with strides and
 * offsets, and checks them all against the reference.
 */
async function checkProducts(
  ctx: GpuContext,
  kernels: MatrixKernels,
  w: TestMatrix,
  gw: GpuWeight,
  seed: number,
  { ns = [N], pad = 0, alignedX = false }: Placement = {},
): Promise<void> {
  const name = `${ggmlTypeName(w.type)}${alignedX ? " (aligned x)" : ""}`;
  const tolerance = TOLERANCE.get(w.type) ?? 0;
  const { rows, cols } = w;
  const xOffset = alignedX ? 8 : 3;
  const xStride = alignedX ? cols + (cols % 4 === 0 ? 4 : 8 - (cols % 4)) : cols + 5;
  const yOffset = 7;
  const yStride = rows + 2;
  const nMax = Math.max(...ns);
  const x = randomArray(xOffset + nMax * xStride + pad, seed + 1);
  const bias = randomArray(rows, seed + 2);
  const xBuf = f32Buffer(ctx, "x", x);
  const biasBuf = f32Buffer(ctx, "bias", bias);
  const yVec = f32Buffer(ctx, "y matvec", new Float32Array(rows + pad).fill(NaN));
  const yBias = f32Buffer(ctx, "y matvec+bias", new Float32Array(rows + pad).fill(NaN));
  const yLen = (n: number) => yOffset + n * yStride + pad;
  const yMats = ns.map((n) => f32Buffer(ctx, `y matmul n=${n}`, new Float32Array(yLen(n)).fill(NaN)));

  await kernels.prepare([gw], { bias: true });
  const arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
  const step = new GpuStep(ctx, arena, `products ${name}`);
  kernels.matvec(step, gw, xBuf, yVec, { xOffset });
  kernels.matvec(step, gw, xBuf, yBias, { xOffset, bias: biasBuf });
  ns.forEach((n, i) => kernels.matmul(step, gw, xBuf, yMats[i], n, { xOffset, xStride, yOffset, yStride, bias: biasBuf }));
  step.submit();

  const xVec = x.subarray(xOffset);
  assertClose(`${name} matvec`, await readF32(ctx, yVec, 0, rows), reference(w, xVec, 1, cols), tolerance);
  assertClose(`${name} matvec+bias`, await readF32(ctx, yBias, 0, rows), reference(w, xVec, 1, cols, bias), tolerance);
  for (const [i, n] of ns.entries()) {
    const yAll = await readF32(ctx, yMats[i], 0, yLen(n));
    assertClose(`${name} matmul n=${n}`, gather(yAll, n, yOffset, yStride, rows), reference(w, xVec, n, xStride, bias), tolerance);
    // Nothing outside the n strided output rows is written: not the gaps between them, not
    // past the last (the last pass of the small-batch kernel may hold fewer than NB rows).
    for (let e = 0; e < yAll.length; e++) {
      const m = Math.floor((e - yOffset) / yStride);
      const inside = e >= yOffset && m < n && e - yOffset - m * yStride < rows;
      if (!inside) assert.ok(Number.isNaN(yAll[e]), `${name} matmul n=${n} wrote element ${e}, outside its rows`);
    }
  }
  ctx.check();
  arena.destroy();
  for (const b of [xBuf, biasBuf, yVec, yBias, ...yMats]) ctx.allocator.destroy(b);
}

const ctx = await createGpuContext();
const kernels = new MatrixKernels(ctx);
/** One past the largest n of the small-batch kernel: the tiled kernel. */
const TILED_N = DEFAULT_BATCH_MAX + 1;

for (const [i, type] of [...TOLERANCE.keys()].entries()) {
  Deno.test(`matvec and matmul: ${ggmlTypeName(type)} (${ROWS} rows, n = 1, ${N}, ${TILED_N})`, async () => {
    const w = makeMatrix(type, ROWS, colsFor(type), 100 + i);
    const gw = await uploadWeight(ctx, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `w ${ggmlTypeName(type)}`);
    assert.equal(gw.parts.length, 1);
    await checkProducts(ctx, kernels, w, gw, 200 + i, { ns: [N, TILED_N] });
    destroyWeight(ctx.allocator, gw);
  });
}

/** Input-row counts around the small-batch kernel's passes of 2, 4 and 8 rows. */
const SMALL_NS = [2, 3, 7, 8, 9, 16, 17];

Deno.test(`small-batch matmul, n = ${SMALL_NS.join(", ")}: several types, bias, aligned and odd x placement`, async () => {
  // F16 with 40 columns: padded rows (x read with bounds checks, never as vec4).
  for (const [i, type] of [GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q5_1, GGMLType.Q6_K, GGMLType.F16].entries()) {
    const w = makeMatrix(type, ROWS, colsFor(type), 500 + i);
    const gw = await uploadWeight(ctx, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `small ${ggmlTypeName(type)}`);
    for (const alignedX of [true, false]) await checkProducts(ctx, kernels, w, gw, 600 + 2 * i + Number(alignedX), { ns: SMALL_NS, alignedX });
    destroyWeight(ctx.allocator, gw);
  }
});

Deno.test("small-batch matmul over split weights (n = 2, 9, 17)", async () => {
  // Parts of at most 1 KiB: 3 Q8_0 rows of 256 values (272 bytes each) or 7 Q4_K rows
  // (144 bytes) per part; each part is its own dispatch writing its own rows of Y.
  for (const [i, type] of [GGMLType.Q8_0, GGMLType.Q4_K].entries()) {
    const w = makeMatrix(type, ROWS, 256, 700 + i);
    const gw = await uploadWeight(ctx, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `split ${ggmlTypeName(type)}`, { maxPartBytes: 1024 });
    assert.ok(gw.parts.length >= 5, `${ggmlTypeName(type)}: ${gw.parts.length} parts`);
    for (const alignedX of [true, false]) await checkProducts(ctx, kernels, w, gw, 800 + 2 * i + Number(alignedX), { ns: [2, 9, 17], alignedX });
    destroyWeight(ctx.allocator, gw);
  }
});

/**
 * Both single-row shapes on every type the lanes kernel decodes, at sizes it takes (x
 * aligned, whole 16-value chunks, 32-value types in pairs of blocks): 300 rows are one
 * lanes work-group of 256 rows and part of a second; the split upload puts part
 * boundaries mid-work-group. `auto` picks lanes on lavapipe only, so each shape is forced.
 */
const LANES_COLS: ReadonlyMap<GGMLType, number> = new Map([
  [GGMLType.F32, 48],
  [GGMLType.F16, 48],
  [GGMLType.Q4_0, 128],
  [GGMLType.Q5_0, 128],
  [GGMLType.Q8_0, 128],
  [GGMLType.Q4_K, 512],
  [GGMLType.Q6_K, 512],
  [GGMLType.IQ4_NL, 128],
]);
for (const shape of ["lanes", "workgroup"] as const) {
  Deno.test(`single-row matvec, ${shape} shape: ${[...LANES_COLS.keys()].map(ggmlTypeName).join(", ")} (300 rows, whole and split)`, async () => {
    const shaped = new MatrixKernels(ctx, { matvecShape: shape });
    for (const [i, [type, cols]] of [...LANES_COLS].entries()) {
      const w = makeMatrix(type, 300, cols, 700 + i);
      for (const maxPartBytes of [Infinity, Math.ceil(w.bytes.length / 3)]) {
        const gw = await uploadWeight(ctx, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `${shape} ${ggmlTypeName(type)}`, { maxPartBytes });
        const file = matrixVariant(shaped.key("matvec", gw, false)).file;
        assert.equal(file, shape === "lanes" ? "matvec-lanes.wgsl" : "matvec.wgsl", `${ggmlTypeName(type)} takes the ${shape} kernel`);
        await shaped.prepare([gw], { bias: true });
        const compiled = ctx.pipelines.size;
        await checkProducts(ctx, shaped, w, gw, 800 + i, { ns: [N], alignedX: true });
        assert.equal(ctx.pipelines.size, compiled, "prepare() compiled every variant recorded");
        destroyWeight(ctx.allocator, gw);
      }
    }
  });
}

/**
 * matmul-lanes.wgsl (n ≥ 2 on CPU adapters, forced here): 300 rows are two work-groups of
 * 128 rows and part of a third; n from 2 to 70 covers partial and several 8-row passes;
 * split weights put part boundaries mid-work-group. Misaligned x falls back to the
 * small-batch kernel (n ≤ 32) or the tiles.
 */
Deno.test(`lanes matmul, n = 2, 7, 8, 9, 17, 70: ${[...LANES_COLS.keys()].map(ggmlTypeName).join(", ")} (300 rows, whole and split)`, async () => {
  const shaped = new MatrixKernels(ctx, { matvecShape: "lanes" });
  for (const [i, [type, cols]] of [...LANES_COLS].entries()) {
    const w = makeMatrix(type, 300, cols, 900 + i);
    for (const maxPartBytes of [Infinity, Math.ceil(w.bytes.length / 3)]) {
      const gw = await uploadWeight(ctx, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `lanes mm ${ggmlTypeName(type)}`, { maxPartBytes });
      assert.equal(matrixVariant(shaped.key("matmul", gw, false)).file, "matmul-lanes.wgsl");
      await shaped.prepare([gw], { bias: true });
      const compiled = ctx.pipelines.size;
      await checkProducts(ctx, shaped, w, gw, 950 + i, { ns: [2, 7, 8, 9, 17, 70], alignedX: true });
      await checkProducts(ctx, shaped, w, gw, 960 + i, { ns: [9, 33] });
      assert.equal(ctx.pipelines.size, compiled, "prepare() compiled every variant recorded");
      destroyWeight(ctx.allocator, gw);
    }
  }
  shaped.destroy();
});

/**
 * The whole-block kernel for GPUs (matvec-blocks.wgsl) on every type it decodes, forced
 * here (`auto` picks it on adapters other than lavapipe): 37 rows (not a multiple of the 4
 * or 3 rows per work-group), rows of 3 units of 64 values (fewer units than threads) and of
 * 4096 columns (one and two units per thread), whole and split weights. x is aligned (read
 * as vec4); checkProducts' unaligned placement would take the matvec.wgsl fallback.
 */
const BLOCKS_COLS: ReadonlyMap<GGMLType, number> = new Map([
  [GGMLType.F16, 64],
  [GGMLType.Q4_0, 64],
  [GGMLType.Q8_0, 64],
  [GGMLType.Q5_0, 128],
  [GGMLType.Q4_K, 256],
  [GGMLType.Q6_K, 256],
]);
Deno.test(`single-row matvec, blocks shape: ${[...BLOCKS_COLS.keys()].map(ggmlTypeName).join(", ")} (${ROWS} rows, whole and split, two shapes)`, async () => {
  for (const options of [{}, { matvecWorkgroupSize: 32, matvecRows: 3 }]) {
    const shaped = new MatrixKernels(ctx, { matvecShape: "blocks", ...options });
    for (const [i, [type, multiple]] of [...BLOCKS_COLS].entries()) {
      for (const cols of [3 * multiple, 4096]) {
        const w = makeMatrix(type, ROWS, cols, 1000 + i);
        for (const maxPartBytes of [Infinity, Math.ceil(w.bytes.length / 3)]) {
          const gw = await uploadWeight(ctx, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `blocks ${ggmlTypeName(type)}`, { maxPartBytes });
          assert.equal(matrixVariant(shaped.key("matvec", gw, false)).file, "matvec-blocks.wgsl", `${ggmlTypeName(type)} × ${cols} takes the blocks kernel`);
          await shaped.prepare([gw], { bias: true });
          const compiled = ctx.pipelines.size;
          await checkProducts(ctx, shaped, w, gw, 1100 + i, { ns: [N], alignedX: true });
          assert.equal(ctx.pipelines.size, compiled, "prepare() compiled every variant recorded");
          destroyWeight(ctx.allocator, gw);
        }
      }
    }
    shaped.destroy();
  }
});

Deno.test("blocks shape falls back to matvec.wgsl where it does not fit (cols, type, unaligned x)", async () => {
  const shaped = new MatrixKernels(ctx, { matvecShape: "blocks" });
  // Q5_0 with 64 columns (its blocks need 128), Q5_1 (not decoded there): matvec.wgsl.
  for (const [i, [type, cols]] of ([[GGMLType.Q5_0, 64], [GGMLType.Q5_1, 128]] as const).entries()) {
    const w = makeMatrix(type, ROWS, cols, 1200 + i);
    const gw = await uploadWeight(ctx, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `fallback ${ggmlTypeName(type)}`);
    assert.equal(matrixVariant(shaped.key("matvec", gw, false)).file, "matvec.wgsl");
    await checkProducts(ctx, shaped, w, gw, 1300 + i, { ns: [N], alignedX: true });
    destroyWeight(ctx.allocator, gw);
  }
  // Odd x offsets: a Q4_K weight the blocks kernel takes is recorded with matvec.wgsl.
  const w = makeMatrix(GGMLType.Q4_K, ROWS, 512, 1210);
  const gw = await uploadWeight(ctx, { type: w.type, shape: [w.cols, w.rows], bytes: w.bytes }, "fallback Q4_K");
  await checkProducts(ctx, shaped, w, gw, 1310, { ns: [N], alignedX: false });
  destroyWeight(ctx.allocator, gw);
  shaped.destroy();
});

Deno.test("prepare compiles every variant matvec and matmul record, for every n", async () => {
  const w = makeMatrix(GGMLType.Q4_0, ROWS, 96, 11);
  const gw = await uploadWeight(ctx, { type: w.type, shape: [w.cols, w.rows], bytes: w.bytes }, "variants");
  const x = f32Buffer(ctx, "x", 70 * w.cols);
  const y = f32Buffer(ctx, "y", 70 * w.rows);
  const bias = f32Buffer(ctx, "bias", w.rows);
  await kernels.prepare([gw], { bias: true });
  const compiled = ctx.pipelines.size;
  const arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
  const step = new GpuStep(ctx, arena, "variants");
  kernels.matvec(step, gw, x, y);
  kernels.matvec(step, gw, x, y, { bias });
  for (let n = 1; n <= 70; n++) {
    kernels.matmul(step, gw, x, y, n);
    kernels.matmul(step, gw, x, y, n, { bias });
  }
  // A variant missing from prepare() would have been compiled (unchecked) while recording.
  assert.equal(ctx.pipelines.size, compiled);
  step.submit();
  await ctx.finish();
  arena.destroy();
  for (const b of [x, y, bias]) ctx.allocator.destroy(b);
  destroyWeight(ctx.allocator, gw);
});

Deno.test("small-batch and tiled matmul agree with a matvec per row", async () => {
  // Independent of the CPU reference: the three kernels on the same GPU data. Each output
  // is a sum of the same products in a different order, so they agree within f32 rounding.
  const w = makeMatrix(GGMLType.Q4_K, 70, 512, 12);
  const gw = await uploadWeight(ctx, { type: w.type, shape: [w.cols, w.rows], bytes: w.bytes }, "agree");
  const n = 12;
  const x = randomArray(n * w.cols, 13);
  const xBuf = f32Buffer(ctx, "x", x);
  const tiledKernels = new MatrixKernels(ctx, { batchMax: 1 });
  await kernels.prepare([gw]);
  await tiledKernels.prepare([gw], { families: ["matmul"] });
  const [yRows, yBatch, yTiled] = ["rows", "batch", "tiled"].map((label) => f32Buffer(ctx, label, n * w.rows));
  const arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
  const step = new GpuStep(ctx, arena, "agree");
  for (let m = 0; m < n; m++) kernels.matvec(step, gw, xBuf, yRows, { xOffset: m * w.cols, yOffset: m * w.rows });
  kernels.matmul(step, gw, xBuf, yBatch, n);
  tiledKernels.matmul(step, gw, xBuf, yTiled, n);
  step.submit();
  const ref = reference(w, x, n, w.cols);
  const rows = await readF32(ctx, yRows, 0, n * w.rows);
  for (const [label, buffer] of [["small-batch", yBatch], ["tiled", yTiled]] as const) {
    const got = await readF32(ctx, buffer, 0, n * w.rows);
    assertClose(`Q4_K ${label} vs matvec per row`, got, { value: Float64Array.from(rows), bound: ref.bound }, 2e-6);
  }
  arena.destroy();
  for (const b of [xBuf, yRows, yBatch, yTiled]) ctx.allocator.destroy(b);
  destroyWeight(ctx.allocator, gw);
});

Deno.test("matmul spanning several tiles in both directions (130 rows, n = 70)", async () => {
  for (const type of [GGMLType.Q4_0, GGMLType.F16]) {
    const w = makeMatrix(type, 130, 64, 7);
    const gw = await uploadWeight(ctx, { type, shape: [w.cols, w.rows], bytes: w.bytes }, "w tiles");
    const n = 70;
    const x = randomArray(n * w.cols, 8);
    const xBuf = f32Buffer(ctx, "x", x);
    const yBuf = f32Buffer(ctx, "y", n * w.rows);
    await kernels.prepare([gw], { families: ["matmul"] });
    const arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
    const step = new GpuStep(ctx, arena, "tiles");
    kernels.matmul(step, gw, xBuf, yBuf, n);
    step.submit();
    assertClose(`${ggmlTypeName(type)} 130×64, n=70`, await readF32(ctx, yBuf, 0, n * w.rows), reference(w, x, n, w.cols), 2e-6);
    arena.destroy();
    ctx.allocator.destroy(xBuf);
    ctx.allocator.destroy(yBuf);
    destroyWeight(ctx.allocator, gw);
  }
});

Deno.test("split weights, windowed bindings and a 2-D grid (small limits forced)", async () => {
  // Weight parts of at most 1 KiB: a Q8_0 row of 256 values is 8 blocks = 272 bytes on the
  // GPU, so 3 rows fit a part and 37 rows need 13 parts. "Storage bindings" of 4 KiB: x and y
  // buffers padded past that are bound through windows. At most 4 work-groups per grid
  // dimension: the F16 weight (37 rows of 48 padded values, 3552 bytes) stays whole, and
  // 37 rows / 4 per work-group → 10 work-groups → a 4×3 grid.
  const small = await createGpuContext({
    limitOverrides: { maxStorageBufferBindingSize: 4096, maxComputeWorkgroupsPerDimension: 4 },
  });
  try {
    const smallKernels = new MatrixKernels(small);
    const smallTiled = new MatrixKernels(small, { batchMax: 1 });
    for (const [i, type] of [GGMLType.Q8_0, GGMLType.Q6_K, GGMLType.Q4_1, GGMLType.F16].entries()) {
      const w = makeMatrix(type, ROWS, type === GGMLType.F16 ? 40 : 256, 300 + i);
      const whole = type === GGMLType.F16;
      const gw = await uploadWeight(small, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `split ${ggmlTypeName(type)}`, {
        maxPartBytes: whole ? undefined : 1024,
      });
      assert.ok(whole ? gw.parts.length === 1 : gw.parts.length >= 3, `${ggmlTypeName(type)}: ${gw.parts.length} parts`);
      assert.equal(gw.parts.reduce((s, p) => s + p.rows, 0), ROWS);
      for (const part of gw.parts) assert.ok(part.byteLength <= (whole ? 4096 : 1024));
      // n = 3: the small-batch kernel (a pass of 4 rows, one unused), then the tiles.
      await checkProducts(small, smallKernels, w, gw, 400 + i, { ns: [3], pad: 1100 });
      await checkProducts(small, smallTiled, w, gw, 450 + i, { ns: [3], pad: 1100 });
      destroyWeight(small.allocator, gw);
    }
    // The kernels own their cached bind groups' parameter buffers.
    assert.ok(small.allocator.liveBuffers > 0);
    smallKernels.destroy();
    smallTiled.destroy();
    assert.equal(small.allocator.liveBuffers, 0);
    assert.equal(small.allocator.liveBytes, 0);
  } finally {
    await small.destroy();
  }
});

Deno.test({
  name: "subgroup reductions (Dawn; runs when DAWN_VK_ICD is set): matvec, and n = 3, 9 in passes of 4",
  ignore: dawnIcd() === undefined,
  async fn() {
    // Deno's WebGPU offers no subgroups; Dawn (SwiftShader here) does. Its pipelines take
    // tens of seconds each to compile, so one type and two variants: the matvec and the
    // small batch of 4 rows per pass (n = 9: 3 work-groups per rows, the last holding 1 row).
    const { gpu } = await primeDawn();
    const dawn = await createGpuContext({ gpu });
    try {
      assert.ok(dawn.features.subgroups, "Dawn offers subgroups");
      const sgKernels = new MatrixKernels(dawn, { batchRows: 4 });
      const w = makeMatrix(GGMLType.Q8_0, ROWS, 256, 900);
      const gw = await uploadWeight(dawn, { type: w.type, shape: [w.cols, w.rows], bytes: w.bytes }, "subgroups");
      const x = randomArray(9 * w.cols, 901);
      const xBuf = f32Buffer(dawn, "x", x);
      const ns = [1, 3, 9];
      const ys = ns.map((n) => f32Buffer(dawn, `y n=${n}`, n * w.rows));
      await sgKernels.prepare([gw], { families: ["matvec"] });
      // The batch variant compiles (unchecked) while recording; ctx.check() reports errors.
      const arena = new ParamArena(dawn.allocator, dawn.limits.minUniformBufferOffsetAlignment);
      const step = new GpuStep(dawn, arena, "subgroups");
      ns.forEach((n, i) => sgKernels.matmul(step, gw, xBuf, ys[i], n));
      step.submit();
      for (const [i, n] of ns.entries()) {
        assertClose(`Dawn Q8_0 n=${n}`, await readF32(dawn, ys[i], 0, n * w.rows), reference(w, x, n, w.cols), 2e-6);
      }
      dawn.check();
      arena.destroy();
      destroyWeight(dawn.allocator, gw);
    } finally {
      await dawn.destroy();
    }
  },
});

Deno.test({
  name: "blocks matvec with subgroup reductions (Dawn; runs when DAWN_VK_ICD is set): Q4_K, Q6_K, Q8_0 at 64 and 32 threads",
  ignore: dawnIcd() === undefined,
  async fn() {
    // `auto` takes matvec-blocks.wgsl on Dawn (not lavapipe). 4096 columns keep 64 threads
    // (64 units per row); 256 columns drop to 32 (SwiftShader's subgroups of 4 make 8 slots).
    const { gpu } = await primeDawn();
    const dawn = await createGpuContext({ gpu });
    try {
      assert.ok(dawn.features.subgroups, "Dawn offers subgroups");
      const auto = new MatrixKernels(dawn);
      const arena = new ParamArena(dawn.allocator, dawn.limits.minUniformBufferOffsetAlignment);
      for (const [i, [type, cols]] of ([[GGMLType.Q4_K, 4096], [GGMLType.Q6_K, 256], [GGMLType.Q8_0, 4096]] as const).entries()) {
        const w = makeMatrix(type, 13, cols, 950 + i);
        const gw = await uploadWeight(dawn, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `blocks sg ${ggmlTypeName(type)}`, { maxPartBytes: Math.ceil(w.bytes.length / 2) });
        const variant = matrixVariant(auto.key("matvec", gw, false));
        assert.equal(variant.file, "matvec-blocks.wgsl");
        assert.match(variant.name, cols === 4096 ? /_wg64_.*_sg$/ : /_wg32_.*_sg$/);
        await auto.prepare([gw], { families: ["matvec"] });
        const x = randomArray(4 + w.cols, 960 + i);
        const xBuf = f32Buffer(dawn, "x", x);
        const y = f32Buffer(dawn, "y", w.rows);
        const step = new GpuStep(dawn, arena, "blocks sg");
        auto.matvec(step, gw, xBuf, y, { xOffset: 4 });
        step.submit();
        assertClose(`Dawn blocks ${ggmlTypeName(type)}`, await readF32(dawn, y, 0, w.rows), reference(w, x.subarray(4), 1, w.cols), 2e-6);
        dawn.check();
        for (const b of [xBuf, y]) dawn.allocator.destroy(b);
        destroyWeight(dawn.allocator, gw);
      }
      arena.destroy();
      auto.destroy();
    } finally {
      await dawn.destroy();
    }
  },
});

Deno.test({
  name: "IQ4_NL and IQ4_XS on Dawn (runs when DAWN_VK_ICD is set): Tint compiles the level look-up; matvec",
  ignore: dawnIcd() === undefined,
  async fn() {
    // quant.wgsl picks the 16 levels from packed bytes with vector selects and shifts;
    // this checks Dawn's compiler (Tint) and SwiftShader agree with naga and lavapipe.
    const { gpu } = await primeDawn();
    const dawn = await createGpuContext({ gpu });
    try {
      const shaped = new MatrixKernels(dawn, { matvecShape: "workgroup" });
      const arena = new ParamArena(dawn.allocator, dawn.limits.minUniformBufferOffsetAlignment);
      for (const [i, type] of [GGMLType.IQ4_NL, GGMLType.IQ4_XS].entries()) {
        const w = makeMatrix(type, ROWS, 512, 970 + i);
        const gw = await uploadWeight(dawn, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `dawn ${ggmlTypeName(type)}`);
        await shaped.prepare([gw], { families: ["matvec"] });
        const x = randomArray(w.cols, 980 + i);
        const xBuf = f32Buffer(dawn, "x", x);
        const y = f32Buffer(dawn, "y", w.rows);
        const step = new GpuStep(dawn, arena, "iq4");
        shaped.matvec(step, gw, xBuf, y);
        step.submit();
        assertClose(`Dawn ${ggmlTypeName(type)}`, await readF32(dawn, y, 0, w.rows), reference(w, x, 1, w.cols), TOLERANCE.get(type)!);
        dawn.check();
        for (const b of [xBuf, y]) dawn.allocator.destroy(b);
        destroyWeight(dawn.allocator, gw);
      }
      arena.destroy();
      shaped.destroy();
    } finally {
      await dawn.destroy();
    }
  },
});

Deno.test("allocator accounting returns to zero", async () => {
  const before = ctx.allocator.liveBuffers;
  const w = makeMatrix(GGMLType.Q4_K, 8, 256, 9);
  const gw = await uploadWeight(ctx, { type: w.type, shape: [w.cols, w.rows], bytes: w.bytes }, "acct");
  assert.equal(ctx.allocator.liveBuffers, before + 1);
  assert.equal(gw.byteLength, 8 * 144);
  assert.ok(ctx.allocator.peakBytes >= gw.byteLength);
  ctx.allocator.destroyAll();
  assert.equal(ctx.allocator.liveBuffers, 0);
  assert.equal(ctx.allocator.liveBytes, 0);
  await ctx.destroy();
});
