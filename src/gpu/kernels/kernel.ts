/**
 * The small shape shared by the model's kernel families (rmsnorm, rope, attention,
 * elementwise, embedding, history): one compiled variant, bind groups made once
 * by the caller and reused, dispatches recorded into a {@link GpuStep}.
 *
 * ```ts
 * const k = new ModelKernel(ctx, variant);
 * await k.prepare();                                      // checked compile, before recording
 * const group = k.bindGroup("blk.0 norm", [x, null, w, y, stepInfo]); // index = binding
 * k.dispatch(step, group, [rows]);
 * ```
 */
import { InvalidArgumentError } from "../../errors.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { GpuStep, WorkgroupCount } from "../step.ts";

/** A buffer (bound whole) or a buffer range; null for a binding this variant does not use. */
export type BindingInput = GPUBuffer | GPUBufferBinding | null;

/** One compiled kernel variant. */
export class ModelKernel {
  readonly ctx: GpuContext;
  readonly variant: KernelVariant;

  constructor(ctx: GpuContext, variant: KernelVariant) {
    this.ctx = ctx;
    this.variant = variant;
  }

  /** Compiles the variant (GpuError SHADER_COMPILE naming it on failure). */
  async prepare(): Promise<void> {
    await this.ctx.pipelines.getAsync(this.variant);
  }

  /** The compiled pipeline (compiled synchronously if `prepare` was skipped). */
  get pipeline(): GPUComputePipeline {
    return this.ctx.pipelines.get(this.variant);
  }

  /** A bind group for group 0; `bindings[i]` goes to binding i (null: not bound). */
  bindGroup(label: string, bindings: readonly BindingInput[]): GPUBindGroup {
    const entries: GPUBindGroupEntry[] = [];
    bindings.forEach((input, binding) => {
      if (input === null) return;
      // A GPUBufferBinding has `buffer`; a GPUBuffer does not.
      const resource: GPUBufferBinding = "buffer" in input ? input : { buffer: input };
      entries.push({ binding, resource });
    });
    return this.ctx.device.createBindGroup({
      label: `${this.variant.name}: ${label}`,
      layout: this.pipeline.getBindGroupLayout(0),
      entries,
    });
  }

  /** Records one dispatch of this kernel. */
  dispatch(step: GpuStep, group: GPUBindGroup, workgroups: WorkgroupCount): void {
    step.dispatch(this.pipeline, group, workgroups);
  }
}

/** The smallest power of two ≥ n (n ≥ 1). */
export function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** `value`, or an InvalidArgumentError naming the binding a variant needs. */
export function required<T>(value: T | undefined, name: string, variant: KernelVariant): T {
  if (value === undefined) throw new InvalidArgumentError(name, `binding "${name}" is required by ${variant.name}`);
  return value;
}
