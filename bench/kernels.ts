/**
 * Kernel micro-benchmark (not a test): how close the quantized matrix-vector kernels come to
 * the adapter's memory bandwidth, and how many FLOP/s the prefill matrix product reaches.
 *
 *   deno run -A bench/kernels.ts [--rows 4096 --cols 4096] [--types Q4_K,Q8_0] [--json]
 *   deno run -A bench/kernels.ts --quick           # small sizes, a few seconds on lavapipe
 *   deno run -A bench/kernels.ts --matvec-wg 16 --matvec-rows 2   # try another matvec shape
 *   deno run -A bench/kernels.ts --matvec-shape blocks --matvec-wg 128 --matvec-rows 2
 *   deno run -A bench/kernels.ts --skip-matmul --types Q4_K        # matvec only
 *
 * Prints a table and writes results/kernels-<time>.json (`--out-dir`).
 *
 * Decode is bound by reading each weight once per token, so a matvec's figure of merit is
 * bytes read per second against what a plain vec4 copy kernel moves on the same adapter
 * (the roofline proxy: "% of copy"). The copy counts bytes read + written; a matvec counts
 * its weight bytes plus x and y.
 *
 * Timing: Deno resolves every GPU await about 11 ms late, so each measurement records many
 * products into one submission (sized to about `--target-ms` of GPU work) and reads the
 * GPU's own clock through timestamp queries when the adapter has them. Without them, the
 * wall time of K and 2K iterations is measured and differenced, which cancels the fixed
 * submit-and-await cost. Weights rotate through enough copies to exceed `--working-set-mib`,
 * so that a matrix smaller than the CPU's (lavapipe) or GPU's last-level cache is not
 * served from it.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadavg } from "node:os";
import process from "node:process";
import { parseArgs } from "../src/cli/args.ts";
import { GpuError } from "../src/errors.ts";
import { GGMLType, ggmlTypeName } from "../src/gguf/ggml-type.ts";
import { quantize } from "../src/gguf/quant/index.ts";
import { createGpuContext, type GpuContext } from "../src/gpu/device.ts";
import { resolveWebGpu } from "../src/gpu/provider.ts";
import { MatrixKernels } from "../src/gpu/kernels/matmul.ts";
import { GpuStep, ParamArena } from "../src/gpu/step.ts";
import { destroyWeight, GPU_WEIGHT_LAYOUTS, uploadWeight, type GpuWeight } from "../src/gpu/weights.ts";

const parsed = parseArgs(process.argv.slice(2), {
  name: "kernels",
  summary: "Measures matvec GB/s (against a copy kernel) and matmul GFLOP/s on the current WebGPU adapter.",
  flags: {
    rows: { type: "number", integer: true, min: 1, default: 4096, placeholder: "n", description: "matvec weight rows" },
    cols: { type: "number", integer: true, min: 256, default: 4096, placeholder: "n", description: "matvec weight columns (a multiple of 256)" },
    types: { type: "strings", placeholder: "T", description: "matvec types, repeat or comma-separate (default: every GPU type)" },
    matmulTokens: { type: "number", integer: true, min: 2, default: 512, placeholder: "n", description: "matmul rows of X (prompt tokens)" },
    matmulRows: { type: "number", integer: true, min: 1, default: 2048, placeholder: "n", description: "matmul weight rows" },
    matmulCols: { type: "number", integer: true, min: 256, default: 2048, placeholder: "n", description: "matmul weight columns (a multiple of 256)" },
    matmulTypes: { type: "strings", placeholder: "T", description: "matmul types (default F16, Q8_0, Q4_K, Q6_K)" },
    skipMatmul: { type: "boolean", description: "measure the matvec kernels only" },
    matvecWg: { type: "number", integer: true, min: 1, placeholder: "n", description: "matvec threads per work-group (MatrixKernels default)" },
    matvecRows: { type: "number", integer: true, min: 1, placeholder: "n", description: "matvec rows per work-group (MatrixKernels default)" },
    matvecShape: { type: "string", default: "auto", placeholder: "shape", description: "single-row matvec kernel: auto, lanes, workgroup or blocks" },
    targetMs: { type: "number", min: 1, default: 150, placeholder: "ms", description: "GPU time per measured submission" },
    workingSetMib: { type: "number", min: 0, default: 128, placeholder: "MiB", description: "rotate weight copies to at least this many bytes" },
    repetitions: { type: "number", integer: true, min: 1, default: 3, placeholder: "n", description: "measured submissions per kernel (median)" },
    wallClock: { type: "boolean", description: "time with wall clocks even where timestamp queries exist" },
    quick: { type: "boolean", description: "small sizes (1024×1024 matvec, 64×512×512 matmul, 16 MiB working set)" },
    outDir: { type: "string", default: "results", placeholder: "dir", description: "where kernels-<time>.json is written (relative to the project root)" },
    json: { type: "boolean", description: "print one JSON object" },
    webgpu: { type: "string", default: "deno", placeholder: "auto|dawn|deno", description: "WebGPU provider (as the CLI's --webgpu)" },
  },
});
if (parsed.help) {
  console.log(parsed.text);
  process.exit(0);
}
const f = parsed.flags;
if (f.quick) {
  Object.assign(f, { rows: 1024, cols: 1024, matmulTokens: 64, matmulRows: 512, matmulCols: 512, workingSetMib: 16, targetMs: 50, repetitions: 2 });
}
if (f.cols % 256 !== 0 || f.matmulCols % 256 !== 0) {
  console.error("--cols and --matmul-cols must be multiples of 256 (the K-quant super-block)");
  process.exit(2);
}

/** Every type with GPU kernels except F32 (no model ships its matrices in F32). */
const DEFAULT_MATVEC_TYPES = [...GPU_WEIGHT_LAYOUTS.keys()].filter((t) => t !== GGMLType.F32);
const DEFAULT_MATMUL_TYPES = [GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q6_K];

const MATVEC_SHAPES = ["auto", "lanes", "workgroup", "blocks"] as const;

/** The `--matvec-shape` value as a MatrixKernels option. */
function parseShape(word: string): (typeof MATVEC_SHAPES)[number] {
  const shape = MATVEC_SHAPES.find((s) => s === word);
  if (shape === undefined) throw new Error(`--matvec-shape ${word}: expected one of ${MATVEC_SHAPES.join(", ")}`);
  return shape;
}

function parseTypes(words: readonly string[], fallback: readonly GGMLType[]): GGMLType[] {
  const names = words.flatMap((w) => w.split(",")).map((w) => w.trim().toUpperCase()).filter(Boolean);
  if (names.length === 0) return [...fallback];
  const byName = new Map([...GPU_WEIGHT_LAYOUTS.keys()].map((t) => [ggmlTypeName(t).toUpperCase(), t]));
  return names.map((name) => {
    const type = byName.get(name);
    if (type === undefined) throw new Error(`unknown or unsupported type ${name}; known: ${[...byName.keys()].join(", ")}`);
    return type;
  });
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

/**
 * GGUF bytes of a rows×cols matrix: a 16-row tile quantized on the CPU and repeated, since
 * quantizing 16 M values in JavaScript would take longer than the benchmark, and the kernels'
 * speed does not depend on the values (valid blocks keep f16 scales finite).
 */
function matrixBytes(type: GGMLType, rows: number, cols: number): Uint8Array {
  const tileRows = Math.min(rows, 16);
  const next = random(0x5eed + type);
  const tile = quantize(type, Float32Array.from({ length: tileRows * cols }, next));
  const rowBytes = tile.byteLength / tileRows;
  const out = new Uint8Array(rowBytes * rows);
  for (let r = 0; r < rows; r += tileRows) out.set(tile.subarray(0, Math.min(tileRows, rows - r) * rowBytes), r * rowBytes);
  return out;
}

/** Median of a non-empty list. */
function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** `promise`, or a GPU_TIMEOUT error after `ms`: a hung submission must end the run, not stall it. */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new GpuError("GPU_TIMEOUT", `benchmark submission did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Records `iterations` repetitions of some GPU work into a step. */
type Recorder = (step: GpuStep, iterations: number) => void;

/**
 * Milliseconds of GPU time per iteration of `record`, by timestamp queries or wall-clock
 * differencing (see the file comment).
 */
class Timer {
  readonly method: "timestamp" | "wall";
  private readonly ctx: GpuContext;
  private readonly arena: ParamArena;
  private readonly querySet: GPUQuerySet | null;
  private readonly resolve: GPUBuffer | null;
  private readonly readback: GPUBuffer | null;

  constructor(ctx: GpuContext, useTimestamps: boolean) {
    this.ctx = ctx;
    this.arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
    this.method = useTimestamps ? "timestamp" : "wall";
    this.querySet = useTimestamps ? ctx.device.createQuerySet({ label: "bench timestamps", type: "timestamp", count: 2 }) : null;
    this.resolve = useTimestamps
      ? ctx.allocator.createBuffer({ label: "bench timestamps resolve", size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC })
      : null;
    this.readback = useTimestamps
      ? ctx.allocator.createBuffer({ label: "bench timestamps readback", size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
      : null;
  }

  /**
   * GPU ms per iteration: a first submission of one iteration (after a warm-up of
   * `warmup`) estimates the cost; then `repetitions` submissions of about `targetMs` each.
   */
  async perIteration(record: Recorder, warmup: number, targetMs: number, repetitions: number): Promise<{ ms: number; iterations: number }> {
    await this.submission(record, warmup);
    const estimate = Math.max(1e-3, await this.submission(record, 1));
    const iterations = Math.max(1, Math.min(2000, Math.round(targetMs / estimate)));
    const samples: number[] = [];
    for (let i = 0; i < repetitions; i++) {
      if (this.method === "timestamp") samples.push((await this.submission(record, iterations)) / iterations);
      else {
        // The fixed cost of submitting and awaiting (≈ 11 ms in Deno) cancels in the difference.
        const once = await this.submission(record, iterations);
        const twice = await this.submission(record, 2 * iterations);
        samples.push(Math.max(1e-6, twice - once) / iterations);
      }
    }
    return { ms: median(samples), iterations };
  }

  /** Records `iterations` into one submission; returns its GPU time (or wall time) in ms. */
  private async submission(record: Recorder, iterations: number): Promise<number> {
    const step = new GpuStep(this.ctx, this.arena, "bench");
    if (this.querySet) {
      // GpuStep owns its compute pass, so the timestamps go into empty passes around it.
      step.encoder.beginComputePass({ label: "bench start", timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 0 } }).end();
    }
    record(step, iterations);
    if (this.querySet && this.resolve && this.readback) {
      // An empty copy closes the step's pass so that the closing pass can be recorded after it.
      step.copyBuffer(this.resolve, 0, this.readback, 0, 0);
      step.encoder.beginComputePass({ label: "bench end", timestampWrites: { querySet: this.querySet, endOfPassWriteIndex: 1 } }).end();
      step.encoder.resolveQuerySet(this.querySet, 0, 2, this.resolve, 0);
      step.encoder.copyBufferToBuffer(this.resolve, 0, this.readback, 0, 16);
    }
    const start = performance.now();
    step.submit();
    if (this.readback) {
      await withTimeout(this.readback.mapAsync(GPUMapMode.READ), 120_000);
      const [t0, t1] = new BigUint64Array(this.readback.getMappedRange().slice(0));
      this.readback.unmap();
      this.ctx.check();
      return Number(t1! - t0!) / 1e6;
    }
    await this.ctx.finish(120_000);
    return performance.now() - start;
  }

  destroy(): void {
    this.arena.destroy();
    this.querySet?.destroy();
  }
}

/** Grid-stride-free vec4 copies (one vec4 per thread: the fastest form on lavapipe). */
function copyShader(workgroupSize: number): string {
  return `
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> B: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> P: vec4<u32>; // x: vec4 count, y: work-groups along x
@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) w: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let i = (w.x + w.y * P.y) * ${workgroupSize}u + l;
  if (i < P.x) { B[i] = A[i]; }
}`;
}

interface CopyResult {
  readonly bytes: number;
  readonly ms: number;
  readonly gbps: number;
  readonly workgroupSize: number;
}

/** The best of two copy kernels (64- and 256-thread work-groups) over `bytes` (read + written). */
async function benchCopy(ctx: GpuContext, timer: Timer, bytes: number): Promise<CopyResult> {
  const size = Math.min(Math.floor(bytes / 2 / 16) * 16, ctx.limits.maxStorageBufferBindingSize);
  const usage = GPUBufferUsage.STORAGE;
  const a = ctx.allocator.createBuffer({ label: "copy src", size, usage });
  const b = ctx.allocator.createBuffer({ label: "copy dst", size, usage });
  let best: CopyResult | null = null;
  try {
    for (const wg of [64, 256]) {
      const module = ctx.device.createShaderModule({ label: `copy_wg${wg}`, code: copyShader(wg) });
      const pipeline = await ctx.device.createComputePipelineAsync({ label: `copy_wg${wg}`, layout: "auto", compute: { module, entryPoint: "main" } });
      const vec4s = size / 16;
      const groups = Math.ceil(vec4s / wg);
      const max = ctx.limits.maxComputeWorkgroupsPerDimension;
      const gy = Math.ceil(groups / max);
      const gx = Math.ceil(groups / gy);
      const record: Recorder = (step, n) => {
        const params = step.params(new Uint32Array([vec4s, gx, 0, 0]));
        const entries = [{ binding: 0, resource: { buffer: a } }, { binding: 1, resource: { buffer: b } }, { binding: 2, resource: params }];
        const group = ctx.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
        for (let i = 0; i < n; i++) step.dispatch(pipeline, group, [gx, gy]);
      };
      const { ms } = await timer.perIteration(record, 2, f.targetMs, f.repetitions);
      const result = { bytes: 2 * size, ms, gbps: (2 * size) / ms / 1e6, workgroupSize: wg };
      if (!best || result.gbps > best.gbps) best = result;
    }
  } finally {
    ctx.allocator.destroy(a);
    ctx.allocator.destroy(b);
  }
  return best!;
}

interface MatvecResult {
  readonly type: string;
  readonly rows: number;
  readonly cols: number;
  /** Bytes one product reads and writes: weight + x + y. */
  readonly bytes: number;
  readonly weightBytes: number;
  readonly copies: number;
  readonly iterations: number;
  readonly ms: number;
  readonly gbps: number;
  readonly pctOfCopy: number;
}

async function benchMatvec(ctx: GpuContext, kernels: MatrixKernels, timer: Timer, type: GGMLType, copyGbps: number): Promise<MatvecResult> {
  const bytes = matrixBytes(type, f.rows, f.cols);
  const first = await uploadWeight(ctx, { type, shape: [f.cols, f.rows], bytes }, `bench ${ggmlTypeName(type)} #0`);
  const copies = Math.max(1, Math.min(64, Math.ceil((f.workingSetMib * 2 ** 20) / first.byteLength)));
  const weights: GpuWeight[] = [first];
  const x = ctx.allocator.createBuffer({ label: "matvec x", size: f.cols * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const y = ctx.allocator.createBuffer({ label: "matvec y", size: f.rows * 4, usage: GPUBufferUsage.STORAGE });
  try {
    for (let i = 1; i < copies; i++) weights.push(await uploadWeight(ctx, { type, shape: [f.cols, f.rows], bytes }, `bench ${ggmlTypeName(type)} #${i}`));
    ctx.allocator.writeBuffer(x, 0, Float32Array.from({ length: f.cols }, random(7)));
    await kernels.prepare(weights.slice(0, 1), { families: ["matvec"] });
    const record: Recorder = (step, n) => {
      for (let i = 0; i < n; i++) kernels.matvec(step, weights[i % copies]!, x, y);
    };
    const { ms, iterations } = await timer.perIteration(record, copies, f.targetMs, f.repetitions);
    const total = first.byteLength + 4 * (f.cols + f.rows);
    const gbps = total / ms / 1e6;
    return {
      type: ggmlTypeName(type),
      rows: f.rows,
      cols: f.cols,
      bytes: total,
      weightBytes: first.byteLength,
      copies,
      iterations,
      ms,
      gbps,
      pctOfCopy: (100 * gbps) / copyGbps,
    };
  } finally {
    for (const w of weights) destroyWeight(ctx.allocator, w);
    ctx.allocator.destroy(x);
    ctx.allocator.destroy(y);
  }
}

interface MatmulResult {
  readonly type: string;
  readonly tokens: number;
  readonly rows: number;
  readonly cols: number;
  readonly flop: number;
  readonly iterations: number;
  readonly ms: number;
  readonly gflops: number;
}

async function benchMatmul(ctx: GpuContext, kernels: MatrixKernels, timer: Timer, type: GGMLType): Promise<MatmulResult> {
  const n = f.matmulTokens;
  const bytes = matrixBytes(type, f.matmulRows, f.matmulCols);
  const w = await uploadWeight(ctx, { type, shape: [f.matmulCols, f.matmulRows], bytes }, `bench matmul ${ggmlTypeName(type)}`);
  const x = ctx.allocator.createBuffer({ label: "matmul X", size: n * f.matmulCols * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const y = ctx.allocator.createBuffer({ label: "matmul Y", size: n * f.matmulRows * 4, usage: GPUBufferUsage.STORAGE });
  try {
    ctx.allocator.writeBuffer(x, 0, Float32Array.from({ length: n * f.matmulCols }, random(11)));
    await kernels.prepare([w], { families: ["matmul"] });
    const record: Recorder = (step, count) => {
      for (let i = 0; i < count; i++) kernels.matmul(step, w, x, y, n);
    };
    const { ms, iterations } = await timer.perIteration(record, 1, f.targetMs, f.repetitions);
    const flop = 2 * n * f.matmulRows * f.matmulCols;
    return { type: ggmlTypeName(type), tokens: n, rows: f.matmulRows, cols: f.matmulCols, flop, iterations, ms, gflops: flop / ms / 1e6 };
  } finally {
    destroyWeight(ctx.allocator, w);
    ctx.allocator.destroy(x);
    ctx.allocator.destroy(y);
  }
}

function adapterName(ctx: GpuContext): string {
  const info = ctx.adapterInfo;
  if (!info) return "unknown adapter";
  return [info.vendor, info.architecture, info.device, info.description].filter((s) => s && s.length > 0).join(" / ") || "unknown adapter";
}

const matvecTypes = parseTypes(f.types, DEFAULT_MATVEC_TYPES);
const matmulTypes = f.skipMatmul ? [] : parseTypes(f.matmulTypes, DEFAULT_MATMUL_TYPES);
const provider = f.webgpu === "auto" || f.webgpu === "dawn" ? f.webgpu : "deno";
const ctx = await createGpuContext({ gpu: (await resolveWebGpu(provider)).gpu });
const timer = new Timer(ctx, ctx.features.timestampQuery && !f.wallClock);
const kernels = new MatrixKernels(ctx, { matvecWorkgroupSize: f.matvecWg, matvecRows: f.matvecRows, matvecShape: parseShape(f.matvecShape) });
const log = (line: string) => {
  if (!f.json) console.log(line);
};
try {
  log(`adapter: ${adapterName(ctx)}; timing: ${timer.method === "timestamp" ? "timestamp queries" : "wall clock, K vs 2K iterations"}`);
  const copy = await benchCopy(ctx, timer, Math.max(f.workingSetMib * 2 ** 20, 2 ** 24));
  log(`copy: ${(copy.bytes / 2 ** 20).toFixed(0)} MiB read+written, ${copy.ms.toFixed(3)} ms, ${copy.gbps.toFixed(2)} GB/s (work-group ${copy.workgroupSize})`);
  log("");
  log(`matvec ${f.rows}×${f.cols} (bytes: weight + x + y)`);
  log(`${"kernel".padEnd(8)} ${"bytes".padStart(10)} ${"ms".padStart(9)} ${"GB/s".padStart(8)} ${"% copy".padStart(7)}`);
  const matvec: MatvecResult[] = [];
  for (const type of matvecTypes) {
    const r = await benchMatvec(ctx, kernels, timer, type, copy.gbps);
    matvec.push(r);
    log(`${r.type.padEnd(8)} ${r.bytes.toLocaleString("en-US").padStart(10)} ${r.ms.toFixed(3).padStart(9)} ${r.gbps.toFixed(2).padStart(8)} ${r.pctOfCopy.toFixed(0).padStart(6)}%`);
  }
  log("");
  log(`matmul ${f.matmulTokens} tokens × ${f.matmulRows}×${f.matmulCols}`);
  log(`${"kernel".padEnd(8)} ${"GFLOP".padStart(8)} ${"ms".padStart(9)} ${"GFLOP/s".padStart(9)}`);
  const matmul: MatmulResult[] = [];
  for (const type of matmulTypes) {
    const r = await benchMatmul(ctx, kernels, timer, type);
    matmul.push(r);
    log(`${r.type.padEnd(8)} ${(r.flop / 1e9).toFixed(2).padStart(8)} ${r.ms.toFixed(2).padStart(9)} ${r.gflops.toFixed(1).padStart(9)}`);
  }
  const created = new Date();
  const result = {
    created: created.toISOString(),
    adapter: adapterName(ctx),
    timing: timer.method,
    loadavg: loadavg(),
    settings: { ...f, json: undefined, outDir: undefined },
    matvec_workgroup: { threads: f.matvecWg ?? "default", rows: f.matvecRows ?? "default", shape: f.matvecShape },
    copy,
    matvec,
    matmul,
  };
  const outDir = resolve(dirname(fileURLToPath(import.meta.url)), "..", f.outDir);
  await mkdir(outDir, { recursive: true });
  const path = join(outDir, `kernels-${created.toISOString().replace(/[:.]/g, "-")}.json`);
  await writeFile(path, JSON.stringify(result, null, 2) + "\n");
  if (f.json) console.log(JSON.stringify({ ...result, json_path: path }));
  else console.log(`\nwrote ${path}`);
} finally {
  timer.destroy();
  await ctx.destroy();
}
