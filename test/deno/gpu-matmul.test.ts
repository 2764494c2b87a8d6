/**
 * Matrix kernels against a CPU reference, for every GPU weight type.
 * Run: deno test -A test/deno/gpu-matmul.test.ts   (lavapipe here; any WebGPU adapter works)
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
import { MatrixKernels } from "../../src/gpu/kernels/matmul.ts";
import { ParamArena, GpuStep } from "../../src/gpu/step.ts";
import { destroyWeight, uploadWeight, type GpuWeight } from "../../src/gpu/weights.ts";

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
]);

/** Awkward sizes: rows not a multiple of the 4 rows per work-group nor of the 64-row tile. */
const ROWS = 37;
const N = 5;

function colsFor(type: GGMLType): number {
  if (type === GGMLType.F32 || type === GGMLType.F16 || type === GGMLType.BF16) return 40; // not a multiple of 16: padded rows
  if ([GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K].includes(type)) return 512;
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

/**
 * Runs, in one step: matvec, matvec + bias, matmul (n = N) + bias with strides and offsets,
 * and checks all three against the reference.
 */
async function checkProducts(
  ctx: GpuContext,
  kernels: MatrixKernels,
  w: TestMatrix,
  gw: GpuWeight,
  seed: number,
  { n = N, pad = 0 }: { n?: number; pad?: number } = {},
): Promise<void> {
  const name = ggmlTypeName(w.type);
  const tolerance = TOLERANCE.get(w.type) ?? 0;
  const { rows, cols } = w;
  const xOffset = 3;
  const xStride = cols + 5;
  const yOffset = 7;
  const yStride = rows + 2;
  // `pad` unused trailing elements make buffers larger than a (forced small) binding limit.
  const x = randomArray(xOffset + n * xStride + pad, seed + 1);
  const bias = randomArray(rows, seed + 2);
  const xBuf = f32Buffer(ctx, "x", x);
  const biasBuf = f32Buffer(ctx, "bias", bias);
  const yLen = yOffset + n * yStride + pad;
  const yVec = f32Buffer(ctx, "y matvec", new Float32Array(rows + pad).fill(NaN));
  const yBias = f32Buffer(ctx, "y matvec+bias", new Float32Array(rows + pad).fill(NaN));
  const yMat = f32Buffer(ctx, "y matmul", new Float32Array(yLen).fill(NaN));

  await kernels.prepare([gw], { bias: true });
  const arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
  const step = new GpuStep(ctx, arena, `products ${name}`);
  kernels.matvec(step, gw, xBuf, yVec, { xOffset });
  kernels.matvec(step, gw, xBuf, yBias, { xOffset, bias: biasBuf });
  kernels.matmul(step, gw, xBuf, yMat, n, { xOffset, xStride, yOffset, yStride, bias: biasBuf });
  step.submit();

  const xVec = x.subarray(xOffset);
  assertClose(`${name} matvec`, await readF32(ctx, yVec, 0, rows), reference(w, xVec, 1, cols), tolerance);
  assertClose(`${name} matvec+bias`, await readF32(ctx, yBias, 0, rows), reference(w, xVec, 1, cols, bias), tolerance);
  const yAll = await readF32(ctx, yMat, 0, yLen);
  assertClose(`${name} matmul`, gather(yAll, n, yOffset, yStride, rows), reference(w, xVec, n, xStride, bias), tolerance);
  // Gaps between strided output rows are never written.
  for (let m = 0; m < n; m++) {
    for (let g = rows; g < yStride && yOffset + m * yStride + g < yLen; g++) {
      assert.ok(Number.isNaN(yAll[yOffset + m * yStride + g]), `${name} matmul wrote outside its rows at m=${m}, col ${g}`);
    }
  }
  ctx.check();
  arena.destroy();
  for (const b of [xBuf, biasBuf, yVec, yBias, yMat]) ctx.allocator.destroy(b);
}

const ctx = await createGpuContext();
const kernels = new MatrixKernels(ctx);

for (const [i, type] of [...TOLERANCE.keys()].entries()) {
  Deno.test(`matvec and matmul: ${ggmlTypeName(type)} (${ROWS} rows, n = ${N})`, async () => {
    const w = makeMatrix(type, ROWS, colsFor(type), 100 + i);
    const gw = await uploadWeight(ctx, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `w ${ggmlTypeName(type)}`);
    assert.equal(gw.parts.length, 1);
    await checkProducts(ctx, kernels, w, gw, 200 + i);
    destroyWeight(ctx.allocator, gw);
  });
}

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
    for (const [i, type] of [GGMLType.Q8_0, GGMLType.Q6_K, GGMLType.Q4_1, GGMLType.F16].entries()) {
      const w = makeMatrix(type, ROWS, type === GGMLType.F16 ? 40 : 256, 300 + i);
      const whole = type === GGMLType.F16;
      const gw = await uploadWeight(small, { type, shape: [w.cols, w.rows], bytes: w.bytes }, `split ${ggmlTypeName(type)}`, {
        maxPartBytes: whole ? undefined : 1024,
      });
      assert.ok(whole ? gw.parts.length === 1 : gw.parts.length >= 3, `${ggmlTypeName(type)}: ${gw.parts.length} parts`);
      assert.equal(gw.parts.reduce((s, p) => s + p.rows, 0), ROWS);
      for (const part of gw.parts) assert.ok(part.byteLength <= (whole ? 4096 : 1024));
      await checkProducts(small, smallKernels, w, gw, 400 + i, { n: 3, pad: 1100 });
      destroyWeight(small.allocator, gw);
    }
    assert.equal(small.allocator.liveBuffers, 0);
    assert.equal(small.allocator.liveBytes, 0);
  } finally {
    await small.destroy();
  }
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
