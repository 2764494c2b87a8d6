/**
 * Token sampling on the device (shaders/sample.wgsl): the algorithm of
 * src/engine/sampler.ts, one row of logits per work-group, so the sampled id can stay on the
 * GPU and feed the next step's embedding lookup without a readback. It implements the
 * {@link DeviceSampler} of sampling-hook.ts (row layout and buffers described there).
 *
 * ```ts
 * const sampler = await createDeviceSampler(ctx, { vocabSize: 32000, maxRows: 16 });
 * writeSampleRow(view, 0, sampleRowOf(params, slot, sampleIndex, outIndex)); // → rowParams
 * const pass = encoder.beginComputePass();
 * sampler.record(pass, { logits, rows: 1, rowParams, history, lastSampled, outIds });
 * pass.end();
 * ```
 *
 * `logits` (rows × vocab f32) is **overwritten in place**: with the penalized logits, then,
 * when not greedy, with the unnormalized probabilities exp(l / T − max). Ids are written as
 * u32 (the same bits as the i32 the runner reads, since ids are < 2^31).
 *
 * Penalties read `history` (kernels/history.ts): the window is the last
 * min(penaltyWindow, count, HISTORY_CAP) tokens, so a penaltyWindow above HISTORY_CAP could
 * not match the CPU sampler, and {@link WgslSampler.supports} refuses it when penalties are on.
 */
import { GpuError, InvalidArgumentError } from "../../errors.ts";
import type { SamplingParams } from "../../sampling/sampler.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import { HISTORY_CAP } from "./history.ts";
import { ModelKernel } from "./kernel.ts";
import type { DeviceSampler, DeviceSamplerArgs } from "./sampling-hook.ts";

/** Typed key of a sampler variant. */
export interface SampleKernelKey {
  readonly vocabSize: number;
  /** Threads per work-group (power of two). */
  readonly workgroupSize: number;
  /** u32 words of work-group memory for the penalty window and the gathered candidates. */
  readonly scratchWords: number;
}

/** The variant (name, file, defines) of a key. */
export function sampleVariant(key: SampleKernelKey): KernelVariant {
  return {
    name: `sample_v${key.vocabSize}_wg${key.workgroupSize}_s${key.scratchWords}`,
    file: "sample.wgsl",
    defines: { WG: key.workgroupSize, VOCAB: key.vocabSize, HISTORY_CAP, SCRATCH: key.scratchWords },
  };
}

/** Options of {@link createDeviceSampler}. */
export interface DeviceSamplerOptions {
  readonly vocabSize: number;
  /** Most rows one `record` may sample. */
  readonly maxRows: number;
  /**
   * Threads per work-group (a power of two). Default: 256 (the WebGPU minimum of the
   * per-work-group limit), fewer for vocabularies under 2048 (about 8 logits per thread, at
   * least 32), where idle threads would only add to every barrier.
   */
  readonly workgroupSize?: number;
}

/** Most candidate values we gather; more only lengthens the one gathering pass. */
const MAX_SCRATCH_WORDS = 4096;
/** Work-group bytes the shader uses besides `scratch`, per thread (two vec4 arrays)… */
const REDUCTION_BYTES_PER_THREAD = 32;
/** …and in fixed scalars (a few words, rounded up generously). */
const FIXED_WORKGROUP_BYTES = 128;

/** The WGSL sampler; see the module comment. */
export class WgslSampler implements DeviceSampler {
  readonly ctx: GpuContext;
  readonly vocabSize: number;
  readonly maxRows: number;
  readonly kernel: ModelKernel;
  /** Bind groups by rowParams buffer (the runner uses one per lookahead sub-step). */
  readonly #groups = new Map<GPUBuffer, { group: GPUBindGroup; buffers: readonly GPUBuffer[] }>();

  constructor(ctx: GpuContext, options: DeviceSamplerOptions) {
    const { vocabSize, maxRows } = options;
    const wg = options.workgroupSize ?? defaultWorkgroupSize(vocabSize);
    if (!Number.isInteger(vocabSize) || vocabSize < 1 || vocabSize > 0x7fffffff) {
      throw new InvalidArgumentError("vocabSize", `${vocabSize} must be a positive integer`);
    }
    const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
    if (!Number.isInteger(maxRows) || maxRows < 1 || maxRows > maxGroups) {
      throw new InvalidArgumentError("maxRows", `${maxRows} must be an integer in [1, ${maxGroups}]`);
    }
    if (wg < 1 || (wg & (wg - 1)) !== 0 || wg > ctx.limits.maxComputeInvocationsPerWorkgroup) {
      throw new InvalidArgumentError("workgroupSize", `${wg} must be a power of two ≤ ${ctx.limits.maxComputeInvocationsPerWorkgroup}`);
    }
    const logitsBytes = vocabSize * 4 * maxRows;
    if (logitsBytes > ctx.limits.maxStorageBufferBindingSize) {
      throw new GpuError(
        "LIMIT_TOO_LOW",
        `sampler: ${maxRows} rows of ${vocabSize} logits (${logitsBytes} bytes) exceed the storage binding limit`,
        { limit: "maxStorageBufferBindingSize", needed: logitsBytes, available: ctx.limits.maxStorageBufferBindingSize },
      );
    }
    const free = ctx.limits.maxComputeWorkgroupStorageSize - REDUCTION_BYTES_PER_THREAD * wg - FIXED_WORKGROUP_BYTES;
    const scratchWords = Math.min(MAX_SCRATCH_WORDS, Math.floor(free / 4));
    if (scratchWords < HISTORY_CAP) {
      throw new GpuError(
        "LIMIT_TOO_LOW",
        `sampler: work-group storage ${ctx.limits.maxComputeWorkgroupStorageSize} bytes leaves ${scratchWords} words for the ${HISTORY_CAP}-token penalty window`,
        { limit: "maxComputeWorkgroupStorageSize" },
      );
    }
    this.ctx = ctx;
    this.vocabSize = vocabSize;
    this.maxRows = maxRows;
    this.kernel = new ModelKernel(ctx, sampleVariant({ vocabSize, workgroupSize: wg, scratchWords }));
  }

  prepare(): Promise<void> {
    return this.kernel.prepare();
  }

  /** Every setting, except a penalty window longer than the device's history ring. */
  supports(p: SamplingParams): boolean {
    const penalties = p.repeatPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
    return !penalties || p.penaltyWindow <= HISTORY_CAP;
  }

  record(pass: GPUComputePassEncoder, args: DeviceSamplerArgs): void {
    const { rows } = args;
    if (!Number.isInteger(rows) || rows < 0 || rows > this.maxRows) {
      throw new InvalidArgumentError("rows", `${rows} must be an integer in [0, ${this.maxRows}]`);
    }
    if (rows === 0) return;
    pass.setPipeline(this.kernel.pipeline);
    pass.setBindGroup(0, this.bindGroup(args));
    pass.dispatchWorkgroups(rows);
  }

  /** The bind group of these buffers, made once per rowParams buffer while the others stay. */
  private bindGroup(a: DeviceSamplerArgs): GPUBindGroup {
    const buffers = [a.logits, a.rowParams, a.history, a.lastSampled, a.outIds];
    const cached = this.#groups.get(a.rowParams);
    if (cached && cached.buffers.every((b, i) => b === buffers[i])) return cached.group;
    // Bind at most what the kernel can touch, so a larger logits buffer still fits the limit.
    const logitsBytes = Math.min(a.logits.size, this.maxRows * this.vocabSize * 4);
    const group = this.kernel.bindGroup("sample", [
      { buffer: a.logits, offset: 0, size: logitsBytes },
      a.rowParams,
      a.history,
      a.lastSampled,
      a.outIds,
    ]);
    this.#groups.set(a.rowParams, { group, buffers });
    return group;
  }
}

/** 256 threads, or about 8 logits per thread (a power of two, at least 32) for small vocabularies. */
export function defaultWorkgroupSize(vocabSize: number): number {
  let wg = 32;
  while (wg < 256 && wg * 8 < vocabSize) wg *= 2;
  return wg;
}

/** Creates a {@link WgslSampler} and compiles its pipeline. */
export async function createDeviceSampler(ctx: GpuContext, options: DeviceSamplerOptions): Promise<DeviceSampler> {
  const sampler = new WgslSampler(ctx, options);
  await sampler.prepare();
  return sampler;
}
