/**
 * What the GPU check page offers its Playwright spec: `window.gpuChecks`, whose methods run
 * one check each and answer plain data (figures, never pass/fail: the spec asserts).
 */

/** The adapter the page's checks run on. */
export interface AdapterReport {
  readonly description: string;
  readonly vendor: string;
  readonly architecture: string;
  /** What the kernels were allowed to use (see GpuFeatures in src/gpu/device.ts). */
  readonly subgroups: boolean;
  readonly f16: boolean;
}

/** One comparison of GPU output with its CPU computation. */
export interface Comparison {
  /** What was compared, e.g. "Q4_K matmul n=5 (+bias)". */
  readonly name: string;
  /** Worst |gpu − cpu| relative to the scale the check states. */
  readonly worst: number;
  /** The bound `worst` must stay within. */
  readonly tolerance: number;
  /** The first element past the bound, or another problem (a write outside the output rows). */
  readonly failure?: string;
}

/** The result of one kernel check. */
export interface KernelReport {
  readonly comparisons: readonly Comparison[];
  /** Pipelines the check compiled and ran, by variant name (`…_sg`: subgroup reductions). */
  readonly variants: readonly string[];
  readonly ms: number;
}

/** The GPU runner's logits for one model and prompt. */
export interface ModelReport {
  /** GpuRunner.description: the adapter and the KV cache type. */
  readonly description: string;
  /** One row of vocabulary-sized logits per prompt position. */
  readonly logits: readonly number[][];
  /** Milliseconds to load (weights up, pipelines compiled) and to run the prompt. */
  readonly loadMs: number;
  readonly runMs: number;
  /** Buffers the runner still held after `dispose()` (0: it destroyed every one). */
  readonly liveBuffersAfterDispose: number;
}

/** Matrix weight types the page can check: one or more per quant family. */
export type MatrixTypeName = "F16" | "Q8_0" | "Q4_0" | "Q4_K" | "Q6_K";

/** The page's checks. */
export interface GpuChecks {
  adapter(): Promise<AdapterReport>;
  /** matvec, small-batch and tiled matmul over a weight of `type`, against the CPU dequantize. */
  matrix(type: MatrixTypeName): Promise<KernelReport>;
  /** RMSNorm (plain and fused residual), RoPE with KV append, and attention, against f64 formulas. */
  ops(): Promise<KernelReport>;
  /** Loads the GGUF at `url` on the GPU runner and returns the logits after each of `tokens`. */
  model(url: string, tokens: readonly number[]): Promise<ModelReport>;
}

declare global {
  interface Window {
    /** Set by the page once its module has loaded. */
    gpuChecks?: GpuChecks;
  }
}
