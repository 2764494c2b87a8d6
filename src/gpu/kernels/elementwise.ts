/**
 * Element-wise ops over the sub-step's token rows (shaders/elementwise.wgsl): SwiGLU's
 * `gate = silu(gate) · up` and the residual add `x = x + h`, both in place.
 *
 * ```ts
 * const swiglu = new ElementwiseKernel(ctx, { op: "swiglu", width: nFf });
 * swiglu.record(step, swiglu.bind({ a: gate, b: up, step: info }), nTokens);
 * ```
 */
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import { splitWorkgroups, type GpuStep } from "../step.ts";
import { ModelKernel } from "./kernel.ts";

/** The element-wise ops. */
export type ElementwiseOp = "swiglu" | "add";

/** Typed key of an element-wise variant. */
export interface ElementwiseKey {
  readonly op: ElementwiseOp;
  /** Values per token row. */
  readonly width: number;
}

const WG = 256;

/** The variant of a key. */
export function elementwiseVariant(key: ElementwiseKey): KernelVariant {
  return {
    name: `${key.op}_w${key.width}`,
    file: "elementwise.wgsl",
    defines: { WIDTH: key.width, WG, SWIGLU: key.op === "swiglu", ADD: key.op === "add" },
  };
}

/** Buffers of one element-wise dispatch. */
export interface ElementwiseBindings {
  /** Updated in place. */
  readonly a: GPUBuffer;
  readonly b: GPUBuffer;
  readonly step: GPUBufferBinding;
}

/** One element-wise variant. */
export class ElementwiseKernel extends ModelKernel {
  readonly key: ElementwiseKey;

  constructor(ctx: GpuContext, key: ElementwiseKey) {
    super(ctx, elementwiseVariant(key));
    this.key = key;
  }

  /** A reusable bind group. */
  bind(b: ElementwiseBindings, label: string = this.key.op): GPUBindGroup {
    return this.bindGroup(label, [b.a, b.b, b.step]);
  }

  /** Records the op over `nTokens` rows. */
  record(step: GpuStep, group: GPUBindGroup, nTokens: number): void {
    const groups = Math.ceil((nTokens * this.key.width) / WG);
    this.dispatch(step, group, splitWorkgroups(groups, this.ctx.limits.maxComputeWorkgroupsPerDimension));
  }
}
