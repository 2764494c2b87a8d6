/**
 * Embedding pooling on the device (shaders/pool.wgsl): adds the rows the final norm
 * gathered into a running sum of one row, so a mean-pooled embedding reads back `width`
 * floats whatever the sequence's length.
 *
 * ```ts
 * const pool = new PoolSumKernel(ctx, { width: nEmbd });
 * await pool.prepare();
 * pool.record(step, pool.bind({ rows: xo, sum, step: info }));   // sum += Σ rows[0 .. n_rows)
 * ```
 */
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { GpuStep } from "../step.ts";
import { ModelKernel } from "./kernel.ts";

/** Typed key of a pooling variant. */
export interface PoolKey {
  /** Values per row (the model's nEmbd). */
  readonly width: number;
}

const WG = 64;

/** The variant of a key. */
export function poolVariant(key: PoolKey): KernelVariant {
  return { name: `pool_sum_w${key.width}`, file: "pool.wgsl", defines: { WIDTH: key.width, WG } };
}

/** Buffers of one pooling dispatch. */
export interface PoolBindings {
  /** (n_rows, width) f32: the step's output-normed rows. */
  readonly rows: GPUBuffer;
  /** (width) f32, updated in place. */
  readonly sum: GPUBuffer;
  /** The sub-step's StepInfo (its n_rows). */
  readonly step: GPUBufferBinding;
}

/** Row sums for mean pooling. */
export class PoolSumKernel extends ModelKernel {
  readonly key: PoolKey;

  constructor(ctx: GpuContext, key: PoolKey) {
    super(ctx, poolVariant(key));
    this.key = key;
  }

  /** A bind group (make it again when a bound buffer is replaced). */
  bind(b: PoolBindings, label = "mean pool"): GPUBindGroup {
    return this.bindGroup(label, [b.rows, b.sum, b.step]);
  }

  /** Records `sum += Σ rows` over the sub-step's rows. */
  record(step: GpuStep, group: GPUBindGroup): void {
    this.dispatch(step, group, [Math.ceil(this.key.width / WG)]);
  }
}
