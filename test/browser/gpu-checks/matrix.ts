/**
 * The matrix kernels (src/gpu/kernels/matmul.ts) in the page, against the CPU: the same
 * check as test/deno/gpu-matmul.test.ts, on fewer variants (SwiftShader compiles each
 * pipeline in seconds). Weights are quantized and dequantized on the CPU
 * (src/gguf/quant, bit-exact with GGML) and multiplied in f64; the GPU reads the same
 * quantized bytes, so only f32 rounding differs, bounded relative to Σ|w·x|.
 */
import { GGMLType } from "../../../src/gguf/ggml-type.ts";
import { dequantize, quantize } from "../../../src/gguf/quant/index.ts";
import { createGpuContext, type GpuContext } from "../../../src/gpu/device.ts";
import { MatrixKernels, matrixVariant, type MatrixKernelKey } from "../../../src/gpu/kernels/matmul.ts";
import type { KernelVariant } from "../../../src/gpu/pipelines.ts";
import { GpuStep, ParamArena } from "../../../src/gpu/step.ts";
import { destroyWeight, type GpuWeight, uploadWeight } from "../../../src/gpu/weights.ts";
import type { Comparison, KernelReport, MatrixTypeName } from "./api.ts";
import { leftBuffers, randomArray, worstError } from "./measures.ts";

const TYPES: Readonly<Record<MatrixTypeName, GGMLType>> = {
  F16: GGMLType.F16,
  Q8_0: GGMLType.Q8_0,
  Q4_0: GGMLType.Q4_0,
  Q4_K: GGMLType.Q4_K,
  Q6_K: GGMLType.Q6_K,
};

/**
 * |gpu − ref| / Σ|w·x|: f32 sums of ≤ 512 products in another order drift by a few 1e-7
 * of Σ|w·x| (gpu-matmul.test.ts saw 2.1e-7 on lavapipe); one wrong 4-bit value moves a sum
 * by about 1e-4 of it.
 */
const TOLERANCE = 2e-6;
/** Awkward: not a multiple of the 4 rows per work-group nor of the 64-row tile. */
const ROWS = 37;
/**
 * Input rows per product: 1 (the matvec), 3 (the small-batch kernel, a pass of 4 rows with
 * one unused), 9 (passes of 8: two work-groups per weight rows, the last holding 1 row),
 * and 33 (past the default batchMax of 32: the 64×64 tiles).
 */
const NS = [1, 3, 9, 33] as const;

/** Columns: F16 rows of 40 are padded to 48 on the GPU; quantized rows hold whole blocks. */
function colsFor(type: GGMLType): number {
  if (type === GGMLType.F16) return 40;
  if (type === GGMLType.Q4_K || type === GGMLType.Q6_K) return 512;
  return 96;
}

/** Rows of the small-batch kernel a product of n records (matmul.ts: the smallest power of two ≥ n, at most 8). */
function batchRowsFor(n: number): number {
  let nb = 1;
  while (nb < Math.min(n, 8)) nb *= 2;
  return nb;
}

/** The variant `MatrixKernels.matmul` records for n input rows. */
function variantFor(kernels: MatrixKernels, weight: GpuWeight, n: number, bias: boolean): KernelVariant {
  let key: MatrixKernelKey;
  if (n === 1) key = kernels.key("matvec", weight, bias);
  else if (n <= 32) key = kernels.key("matvec", weight, bias, batchRowsFor(n));
  else key = kernels.key("matmul", weight, bias);
  return matrixVariant(key);
}

/** Σ_k w·x (+ bias) and Σ_k |w·x| in f64, for n input rows `xStride` apart. */
function reference(w: Float32Array, rows: number, cols: number, x: Float32Array, n: number, xStride: number, bias?: Float32Array) {
  const value = new Float64Array(n * rows);
  const bound = new Float64Array(n * rows);
  for (let m = 0; m < n; m++) {
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      let abs = 0;
      for (let k = 0; k < cols; k++) {
        const p = w[r * cols + k]! * x[m * xStride + k]!;
        sum += p;
        abs += Math.abs(p);
      }
      value[m * rows + r] = sum + (bias ? bias[r]! : 0);
      bound[m * rows + r] = abs;
    }
  }
  return { value, bound };
}

function f32Buffer(ctx: GpuContext, label: string, data: Float32Array): GPUBuffer {
  const buffer = ctx.allocator.createBuffer({
    label,
    size: data.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  ctx.allocator.writeBuffer(buffer, 0, data);
  return buffer;
}

/**
 * Every product of {@link NS} in one step, X and Y placed at odd offsets and strides, each
 * n > 1 with a bias, and compares them with the CPU. Y starts as NaN: an element outside
 * the n strided output rows that is no longer NaN was written by mistake.
 */
export async function checkMatrix(typeName: MatrixTypeName): Promise<KernelReport> {
  const began = performance.now();
  const type = TYPES[typeName];
  const cols = colsFor(type);
  const bytes = quantize(type, randomArray(ROWS * cols, 100 + type));
  const values = dequantize(type, bytes, ROWS * cols);
  const ctx = await createGpuContext();
  try {
    const kernels = new MatrixKernels(ctx);
    const weight = await uploadWeight(ctx, { type, shape: [cols, ROWS], bytes }, `w ${typeName}`);
    // x rows at multiples of 4 f32 (not packed: stride ≠ cols), so the single-row product
    // takes the kernel MatrixKernels picks for this adapter (the whole-block one where the
    // type and size fit it); Deno's suite covers unaligned placements.
    const xOffset = 4;
    const xStride = cols + (cols % 4 === 0 ? 4 : 8 - (cols % 4));
    const yOffset = 7;
    const yStride = ROWS + 2;
    const nMax = Math.max(...NS);
    const x = randomArray(xOffset + nMax * xStride, 200 + type);
    const bias = randomArray(ROWS, 300 + type);
    const xBuf = f32Buffer(ctx, "x", x);
    const biasBuf = f32Buffer(ctx, "bias", bias);
    const yLength = (n: number) => yOffset + n * yStride;
    const ys = NS.map((n) => f32Buffer(ctx, `y n=${n}`, new Float32Array(yLength(n)).fill(NaN)));

    const variants = NS.map((n) => variantFor(kernels, weight, n, n > 1));
    await Promise.all(variants.map((v) => ctx.pipelines.getAsync(v)));
    const compiled = ctx.pipelines.size;
    const arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
    const step = new GpuStep(ctx, arena, `products ${typeName}`);
    NS.forEach((n, i) => {
      const options = { xOffset, xStride, yOffset, yStride, ...(n > 1 ? { bias: biasBuf } : {}) };
      kernels.matmul(step, weight, xBuf, ys[i]!, n, options);
    });
    step.submit();

    const comparisons: Comparison[] = [];
    for (const [i, n] of NS.entries()) {
      const y = new Float32Array(await ctx.allocator.readBuffer(ys[i]!, 0, yLength(n) * 4));
      const got = new Float32Array(n * ROWS);
      for (let m = 0; m < n; m++) got.set(y.subarray(yOffset + m * yStride, yOffset + m * yStride + ROWS), m * ROWS);
      const ref = reference(values, ROWS, cols, x.subarray(xOffset), n, xStride, n > 1 ? bias : undefined);
      const { worst, failure } = worstError(got, ref.value, ref.bound, TOLERANCE);
      const stray = strayWrite(y, n, yOffset, yStride);
      const problem = failure ?? (stray === undefined ? undefined : `wrote element ${stray}, outside its ${n} output rows`);
      const name = `${typeName} ${n === 1 ? "matvec" : `matmul n=${n} (+bias)`} [${variants[i]!.name}]`;
      comparisons.push({ name, worst, tolerance: TOLERANCE, ...(problem ? { failure: problem } : {}) });
    }
    if (ctx.pipelines.size !== compiled) {
      comparisons.push({ name: `${typeName} variants`, worst: 0, tolerance: 0, failure: "recording compiled a variant this check did not list" });
    }
    ctx.check();
    arena.destroy();
    kernels.destroy();
    destroyWeight(ctx.allocator, weight);
    for (const b of [xBuf, biasBuf, ...ys]) ctx.allocator.destroy(b);
    leftBuffers(ctx, comparisons, typeName);
    return { comparisons, variants: variants.map((v) => v.name), ms: performance.now() - began };
  } finally {
    await ctx.destroy();
  }
}

/** The first element of `y` outside rows [yOffset + m·yStride, +ROWS) for m < n that is not NaN. */
function strayWrite(y: Float32Array, n: number, yOffset: number, yStride: number): number | undefined {
  for (let e = 0; e < y.length; e++) {
    const m = Math.floor((e - yOffset) / yStride);
    const inside = e >= yOffset && m < n && e - yOffset - m * yStride < ROWS;
    if (!inside && !Number.isNaN(y[e]!)) return e;
  }
  return undefined;
}
