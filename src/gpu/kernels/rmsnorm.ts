/**
 * RMSNorm of rows (shaders/rmsnorm.wgsl), optionally fused with the residual add before it
 * and with a row gather (the final norm runs only on the rows that get logits).
 *
 * ```ts
 * const norm = new RmsNormKernel(ctx, { width: 2048, eps: 1e-5, residual: true, gather: false });
 * await norm.prepare();
 * const g = norm.bind({ x, h, weight, y, step: stepInfoBinding(info, 0, 256) });
 * norm.record(step, g, nTokens);    // x += h; y = rmsnorm(x) · weight, per token row
 * const post = new RmsNormKernel(ctx, { width: 2048, eps: 1e-6, residual: false, gather: false, post: true });
 * post.record(step, post.bind({ x, h, weight, step: info }), nTokens); // x += rmsnorm(h) · weight
 * const inPlace = new RmsNormKernel(ctx, { width: 2048, eps: 1e-6, residual: false, gather: false, inPlace: true });
 * inPlace.record(step, inPlace.bind({ x: q, weight, step: info }), nTokens); // q = rmsnorm(q) · weight
 * ```
 */
import { InvalidArgumentError } from "../../errors.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { GpuStep } from "../step.ts";
import { type BindingInput, ModelKernel, required } from "./kernel.ts";
import { wgslFloat } from "./tokens.ts";

/** Typed key of an RMSNorm variant. */
export interface RmsNormKey {
  /** Values per row. */
  readonly width: number;
  readonly eps: number;
  /** x += h first (x is written back unless `gather`). */
  readonly residual: boolean;
  /** Rows picked by the row table, written compactly. */
  readonly gather: boolean;
  /**
   * A post-norm: x += rmsnorm(h) · weight (a block's output normed before it joins the
   * residual, gemma's and olmo2's); no `y`. Excludes `residual` and `gather`.
   */
  readonly post?: boolean;
  /**
   * x = rmsnorm(x) · weight in place (olmo2's norms of the whole Q and K projections); no
   * `h`, no `y`. Excludes `residual`, `gather` and `post`.
   */
  readonly inPlace?: boolean;
  /** With `residual`: x += h · residualScale (granite's `residual_scale`); default 1. */
  readonly residualScale?: number;
}

/** The variant of a key. */
export function rmsNormVariant(key: RmsNormKey): KernelVariant {
  if (key.post && (key.residual || key.gather)) {
    throw new InvalidArgumentError("post", "a post-norm variant neither adds a residual first nor gathers rows");
  }
  const post = key.post === true;
  const inPlace = key.inPlace === true;
  if (inPlace && (key.residual || key.gather || post)) {
    throw new InvalidArgumentError("inPlace", "an in-place variant neither adds a residual, gathers rows nor post-norms");
  }
  const wg = key.width >= 1024 ? 256 : 64;
  const eps = wgslFloat(key.eps);
  // 1 keeps the plain variant (and its name): multiplying by 1 changes nothing.
  const resScale = key.residual && key.residualScale !== undefined && key.residualScale !== 1 ? wgslFloat(key.residualScale) : "";
  return {
    name: `rmsnorm_n${key.width}_e${eps}_wg${wg}${key.residual ? "_res" : ""}${resScale ? `x${resScale}` : ""}${key.gather ? "_gather" : ""}${post ? "_post" : ""}${inPlace ? "_inplace" : ""}`,
    file: "rmsnorm.wgsl",
    defines: { N: key.width, EPS: eps, WG: wg, RESIDUAL: key.residual, GATHER: key.gather, POST: post, INPLACE: inPlace, X_RW: post || inPlace || (key.residual && !key.gather), RES_SCALE: resScale },
  };
}

/** Buffers of one RMSNorm dispatch (all f32 rows of `width`). */
export interface RmsNormBindings {
  /** Input rows (updated in place by a residual, non-gather variant). */
  readonly x: GPUBuffer;
  /** Residual rows added to x (residual variants). */
  readonly h?: GPUBuffer;
  /** Norm weight, `width` values. */
  readonly weight: GPUBuffer;
  /** Output rows (all variants but `post` and `inPlace`, which write into x). */
  readonly y?: GPUBuffer;
  /** The sub-step's StepInfo. */
  readonly step: GPUBufferBinding;
  /** Row table (gather variants). */
  readonly rows?: GPUBuffer;
}

/** One RMSNorm variant. */
export class RmsNormKernel extends ModelKernel {
  readonly key: RmsNormKey;

  constructor(ctx: GpuContext, key: RmsNormKey) {
    super(ctx, rmsNormVariant(key));
    this.key = key;
  }

  /** A reusable bind group. */
  bind(b: RmsNormBindings, label = "rmsnorm"): GPUBindGroup {
    const post = this.key.post === true;
    const h = this.key.residual || post ? required(b.h, "h", this.variant) : null;
    const noY = post || this.key.inPlace === true;
    const list: BindingInput[] = [b.x, h, b.weight, noY ? null : required(b.y, "y", this.variant), b.step];
    if (this.key.gather) list.push(required(b.rows, "rows", this.variant));
    return this.bindGroup(label, list);
  }

  /** Records the norm of `rows` rows (tokens, or gathered rows). */
  record(step: GpuStep, group: GPUBindGroup, rows: number): void {
    this.dispatch(step, group, [rows]);
  }
}
