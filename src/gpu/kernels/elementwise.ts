/**
 * Element-wise ops over the sub-step's rows (shaders/elementwise.wgsl), all in place:
 * the gated feed-forwards' `gate = silu(gate) · up` (SwiGLU) and `gate = gelu_tanh(gate) · up`
 * (GeGLU, gemma), the residual add `x = x + h`, and the logit soft-cap
 * `logits = cap · tanh(logits / cap)` (gemma2) over the rows that get logits.
 *
 * ```ts
 * const swiglu = new ElementwiseKernel(ctx, { op: "swiglu", width: nFf });
 * swiglu.record(step, swiglu.bind({ a: gate, b: up, step: info }), nTokens);
 * const cap = new ElementwiseKernel(ctx, { op: "softcap", width: vocab, cap: 30 });
 * cap.record(step, cap.bind({ a: logits, step: info }), nRows);
 * ```
 */
import { InvalidArgumentError } from "../../errors.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import { splitWorkgroups, type GpuStep } from "../step.ts";
import { ModelKernel, required } from "./kernel.ts";
import { wgslFloat } from "./tokens.ts";

/** The element-wise ops: binary ones read B, `softcap` does not. */
export type ElementwiseOp = "swiglu" | "geglu" | "add" | "softcap" | "scale";

/** Typed key of an element-wise variant. */
export interface ElementwiseKey {
  readonly op: ElementwiseOp;
  /** Values per row. */
  readonly width: number;
  /** `softcap` only: the cap (> 0). */
  readonly cap?: number;
  /** `scale` only: the factor (finite, granite's 1 / logit_scale). */
  readonly factor?: number;
}

const WG = 256;

/** The variant of a key. */
export function elementwiseVariant(key: ElementwiseKey): KernelVariant {
  const softcap = key.op === "softcap";
  if (softcap && !(key.cap !== undefined && key.cap > 0 && Number.isFinite(key.cap))) {
    throw new InvalidArgumentError("cap", `softcap needs a finite cap > 0, got ${key.cap}`);
  }
  const cap = softcap ? wgslFloat(key.cap!) : "";
  const scale = key.op === "scale";
  if (scale && !(key.factor !== undefined && Number.isFinite(key.factor))) {
    throw new InvalidArgumentError("factor", `scale needs a finite factor, got ${key.factor}`);
  }
  const factor = scale ? wgslFloat(key.factor!) : "";
  return {
    name: `${key.op}_w${key.width}${softcap ? `_cap${cap}` : ""}${scale ? `_x${factor}` : ""}`,
    file: "elementwise.wgsl",
    defines: {
      WIDTH: key.width,
      WG,
      SWIGLU: key.op === "swiglu",
      GEGLU: key.op === "geglu",
      ADD: key.op === "add",
      SOFTCAP: softcap,
      ...(softcap ? { CAP: cap } : {}),
      SCALE: scale,
      ...(scale ? { FACTOR: factor } : {}),
    },
  };
}

/** Buffers of one element-wise dispatch. */
export interface ElementwiseBindings {
  /** Updated in place. */
  readonly a: GPUBuffer;
  /** The second operand of the binary ops (unused by `softcap`). */
  readonly b?: GPUBuffer;
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
    const second = this.key.op === "softcap" || this.key.op === "scale" ? null : required(b.b, "b", this.variant);
    return this.bindGroup(label, [b.a, second, b.step]);
  }

  /**
   * Records the op over `rows` rows: the sub-step's tokens for the binary ops, its logit
   * rows for `softcap` (the shader bounds them by the StepInfo's count either way).
   */
  record(step: GpuStep, group: GPUBindGroup, rows: number): void {
    const groups = Math.ceil((rows * this.key.width) / WG);
    this.dispatch(step, group, splitWorkgroups(groups, this.ctx.limits.maxComputeWorkgroupsPerDimension));
  }
}
