/**
 * Per-kernel GPU timings from timestamp queries, for `bench --profile`.
 *
 * WebGPU writes timestamps only at the start and end of a pass, so a profiled step records
 * each dispatch in a pass of its own (see {@link GpuStep}). That costs a pass per dispatch
 * (tens of µs on some implementations) between kernels, but the timestamps bracket the
 * kernel alone: the sum of the per-pass times is GPU busy time, and the wall time of the
 * same step recorded normally, minus that sum, is what the host and the gaps cost.
 *
 * ```ts
 * const profiler = new GpuProfiler(ctx, 4096);   // needs the timestamp-query feature
 * const step = new GpuStep(ctx, arena, "decode", profiler);
 * ...record, submit...
 * const passes = await profiler.read();          // [{ label, ns }] in recording order
 * profiler.destroy();
 * ```
 */
import { GpuError } from "../errors.ts";
import type { GpuContext } from "./device.ts";

/** One profiled pass: the label of its (first) kernel and its GPU time. */
export interface PassTiming {
  readonly label: string;
  readonly ns: number;
}

/** Per-kernel totals of a profile. */
export interface KernelTotal {
  readonly kernel: string;
  readonly calls: number;
  readonly ns: number;
}

/** Hands out timestamp-query slots to passes, resolves them, reads them back. */
export class GpuProfiler {
  readonly #ctx: GpuContext;
  readonly #querySet: GPUQuerySet;
  readonly #resolve: GPUBuffer;
  readonly #capacity: number;
  readonly #labels: string[] = [];

  /** `maxPasses`: the most passes one profile holds (two queries each). */
  constructor(ctx: GpuContext, maxPasses: number) {
    if (!ctx.features.timestampQuery) {
      throw new GpuError("GPU_UNSUPPORTED", "profiling needs the timestamp-query feature, which this adapter does not offer");
    }
    this.#ctx = ctx;
    this.#capacity = maxPasses;
    this.#querySet = ctx.device.createQuerySet({ label: "profile", type: "timestamp", count: 2 * maxPasses });
    this.#resolve = ctx.allocator.createBuffer({
      label: "profile timestamps",
      size: 16 * maxPasses,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
  }

  /** Passes recorded so far. */
  get passes(): number {
    return this.#labels.length;
  }

  /** The timestamp writes of the next pass, labelled with its kernel. */
  nextPass(label: string): GPUComputePassTimestampWrites {
    const i = this.#labels.length;
    if (i >= this.#capacity) {
      throw new GpuError("GPU_UNSUPPORTED", `profile holds ${this.#capacity} passes; a step recorded more`);
    }
    this.#labels.push(label);
    return { querySet: this.#querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /**
   * Records the resolution of every query so far into the profile's buffer. Each submission
   * calls it (the last one's copy wins), so a step split into several submissions is whole.
   */
  resolveInto(encoder: GPUCommandEncoder): void {
    const n = this.#labels.length;
    if (n > 0) encoder.resolveQuerySet(this.#querySet, 0, 2 * n, this.#resolve, 0);
  }

  /** Reads the pass timings back (after the profiled work was submitted) and starts over. */
  async read(): Promise<PassTiming[]> {
    const n = this.#labels.length;
    if (n === 0) return [];
    const stamps = new BigUint64Array(await this.#ctx.allocator.readBuffer(this.#resolve, 0, 16 * n));
    const out = this.#labels.map((label, i) => ({ label, ns: Number(stamps[2 * i + 1]! - stamps[2 * i]!) }));
    this.#labels.length = 0;
    return out;
  }

  /** Frees the query set and its buffer. */
  destroy(): void {
    this.#querySet.destroy();
    this.#ctx.allocator.destroy(this.#resolve);
  }
}

/**
 * The kernel family of a pipeline label, so that the variants of one kernel add up together:
 * "matvec_Q4_K_wg64_r4_bias" → "matvec Q4_K", "matvec_Q8_0_wg64_r4_b8" → "matvec Q8_0 (batch)",
 * "rmsnorm_n896_e1e-6_wg64_res" → "rmsnorm+residual", "rope_neox_hd64_…" → "rope".
 */
export function kernelOf(label: string): string {
  const parts = label.split("_");
  const family = parts[0] ?? label;
  if (family === "matvec" || family === "matmul") {
    // The weight type is every part up to the first lower-case one (Q4_K, Q8_0, F16, …).
    const end = parts.findIndex((p, i) => i > 0 && /^[a-z]/.test(p));
    const type = parts.slice(1, end < 0 ? undefined : end).join("_");
    return `${family} ${type}${parts.some((p) => /^b\d+$/.test(p)) ? " (batch)" : ""}`;
  }
  if (family === "rmsnorm") return parts.includes("res") ? "rmsnorm+residual" : "rmsnorm";
  return family;
}

/** Sums pass timings per kernel, largest first. */
export function totalsByKernel(passes: readonly PassTiming[]): KernelTotal[] {
  const map = new Map<string, { calls: number; ns: number }>();
  for (const p of passes) {
    const k = kernelOf(p.label);
    const t = map.get(k) ?? { calls: 0, ns: 0 };
    t.calls++;
    t.ns += Math.max(0, p.ns);
    map.set(k, t);
  }
  return [...map.entries()].map(([kernel, t]) => ({ kernel, ...t })).sort((a, b) => b.ns - a.ns);
}
