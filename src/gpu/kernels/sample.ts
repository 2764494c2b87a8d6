/**
 * Token sampling on the device (shaders/sample.wgsl): the algorithm of
 * src/engine/sampler.ts, one row of logits per work-group, so the sampled id can stay on the
 * GPU and feed the next step's embedding lookup without a readback.
 *
 * ```ts
 * const sampler = await createDeviceSampler(ctx, { vocabSize: 32000, maxRows: 16 });
 * const rowParams = encodeSampleRows([{ slot: 0, sampleIndex: 7, outIndex: 0, sampling }]);
 * ctx.allocator.writeBuffer(rowParamsBuffer, 0, rowParams);
 * const pass = encoder.beginComputePass();
 * sampler.record(pass, { logits, rows: 1, rowParams: rowParamsBuffer, history, lastSampled, outIds });
 * pass.end();
 * ```
 *
 * Buffers (all STORAGE): `logits` rows × vocab f32, **overwritten in place** (with the
 * penalized logits, then with the unnormalized probabilities when not greedy); `rowParams`
 * rows × {@link SAMPLE_ROW_BYTES} (see {@link encodeSampleRow}); `history` the per-slot token
 * rings, (HISTORY_CAP + 1) u32 per slot: word 0 the count of tokens appended, word
 * 1 + (n % HISTORY_CAP) the n-th token; `lastSampled` one u32 per slot; `outIds` u32.
 * The penalty window is the last min(penaltyWindow, count, HISTORY_CAP) tokens: a
 * penaltyWindow above HISTORY_CAP sees fewer tokens than the CPU sampler would.
 */
import { GpuError } from "../../errors.ts";
import type { SamplingParams } from "../../engine/runner.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";

/**
 * Entries of a slot's token ring. Defined here because src/gpu/kernels/history.ts (which is
 * meant to own it) did not exist when this kernel was written; keep the two equal.
 */
export const HISTORY_CAP = 1024;

/** Bytes of one `SampleRow` in `rowParams` (12 words). */
export const SAMPLE_ROW_BYTES = 48;

/** Arguments of one {@link DeviceSampler.record}. */
export interface DeviceSampleArgs {
  /** rows × vocab f32 logits; overwritten by the kernel. */
  logits: GPUBuffer;
  /** How many rows to sample (one work-group each). */
  rows: number;
  /** rows × SampleRow (see {@link encodeSampleRow}). */
  rowParams: GPUBuffer;
  /** Per-slot token rings, (HISTORY_CAP + 1) u32 per slot. */
  history: GPUBuffer;
  /** u32 per slot: receives each row's sampled id at `slot`. */
  lastSampled: GPUBuffer;
  /** u32: receives each row's sampled id at `outIndex`. */
  outIds: GPUBuffer;
}

/** Samples rows of logits on the device. */
export interface DeviceSampler {
  /** Compiles the pipeline (errors become GpuError SHADER_COMPILE). */
  prepare(): Promise<void>;
  /** Records one dispatch of `args.rows` work-groups into `pass`. */
  record(pass: GPUComputePassEncoder, args: DeviceSampleArgs): void;
}

/** One row's parameters, before encoding. */
export interface SampleRowInput {
  /** KV / history slot of the sequence (indexes `history` and `lastSampled`). */
  readonly slot: number;
  /** The generator's counter (which token of the request this is). */
  readonly sampleIndex: number;
  /** Where in `outIds` the sampled id goes. */
  readonly outIndex: number;
  readonly sampling: SamplingParams;
}

/**
 * Writes one `SampleRow` at `byteOffset` of `view`, in the shader's field order. Floats are
 * rounded to f32 here; that rounding is one of the reasons the CPU and GPU samplers may
 * differ at a boundary.
 */
export function encodeSampleRow(view: DataView, byteOffset: number, row: SampleRowInput): void {
  const s = row.sampling;
  const u32 = [row.slot, row.sampleIndex, s.seed, s.topK];
  u32.forEach((v, i) => view.setUint32(byteOffset + 4 * i, clampU32(v), true));
  const f32 = [s.temperature, s.topP, s.minP, s.repeatPenalty, s.presencePenalty, s.frequencyPenalty];
  f32.forEach((v, i) => view.setFloat32(byteOffset + 16 + 4 * i, v, true));
  view.setUint32(byteOffset + 40, clampU32(s.penaltyWindow), true);
  view.setUint32(byteOffset + 44, clampU32(row.outIndex), true);
}

/** Encodes rows for `rowParams`, one {@link SAMPLE_ROW_BYTES} record each. */
export function encodeSampleRows(rows: readonly SampleRowInput[]): Uint8Array {
  const bytes = new Uint8Array(rows.length * SAMPLE_ROW_BYTES);
  const view = new DataView(bytes.buffer);
  rows.forEach((row, i) => encodeSampleRow(view, i * SAMPLE_ROW_BYTES, row));
  return bytes;
}

/** The seed is a u32 (wrapped like `>>> 0` in sampler.ts); counts saturate rather than wrap. */
function clampU32(v: number): number {
  if (!Number.isFinite(v) || v < 0) return v === Infinity ? 0xffffffff : 0;
  return v > 0xffffffff ? 0xffffffff : Math.floor(v);
}

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
  readonly variant: KernelVariant;
  private pipeline: GPUComputePipeline | null = null;
  private cached: { key: readonly unknown[]; group: GPUBindGroup } | null = null;

  constructor(ctx: GpuContext, options: DeviceSamplerOptions) {
    const { vocabSize, maxRows } = options;
    const wg = options.workgroupSize ?? defaultWorkgroupSize(vocabSize);
    if (!Number.isInteger(vocabSize) || vocabSize < 1 || vocabSize > 0x7fffffff) {
      throw new GpuError("GPU_UNSUPPORTED", `sampler: vocabSize ${vocabSize} must be a positive integer`);
    }
    const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
    if (!Number.isInteger(maxRows) || maxRows < 1 || maxRows > maxGroups) {
      throw new GpuError("GPU_UNSUPPORTED", `sampler: maxRows ${maxRows} must be an integer in [1, ${maxGroups}]`);
    }
    if (wg < 1 || (wg & (wg - 1)) !== 0 || wg > ctx.limits.maxComputeInvocationsPerWorkgroup) {
      throw new GpuError("GPU_UNSUPPORTED", `sampler: workgroupSize ${wg} must be a power of two ≤ ${ctx.limits.maxComputeInvocationsPerWorkgroup}`);
    }
    const rowBytes = vocabSize * 4 * maxRows;
    if (rowBytes > ctx.limits.maxStorageBufferBindingSize) {
      throw new GpuError(
        "LIMIT_TOO_LOW",
        `sampler: ${maxRows} rows of ${vocabSize} logits (${rowBytes} bytes) exceed the storage binding limit`,
        { limit: "maxStorageBufferBindingSize", needed: rowBytes, available: ctx.limits.maxStorageBufferBindingSize },
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
    this.variant = sampleVariant({ vocabSize, workgroupSize: wg, scratchWords });
  }

  async prepare(): Promise<void> {
    this.pipeline = await this.ctx.pipelines.getAsync(this.variant);
  }

  record(pass: GPUComputePassEncoder, args: DeviceSampleArgs): void {
    const { rows } = args;
    if (!Number.isInteger(rows) || rows < 0 || rows > this.maxRows) {
      throw new GpuError("GPU_UNSUPPORTED", `sampler: rows ${rows} must be an integer in [0, ${this.maxRows}]`, {
        label: this.variant.name,
      });
    }
    if (rows === 0) return;
    const pipeline = (this.pipeline ??= this.ctx.pipelines.get(this.variant));
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, this.bindGroup(pipeline, args));
    pass.dispatchWorkgroups(rows);
  }

  /** The bind group of these buffers, reused while they stay the same (decode loops). */
  private bindGroup(pipeline: GPUComputePipeline, a: DeviceSampleArgs): GPUBindGroup {
    const key = [a.logits, a.rowParams, a.history, a.lastSampled, a.outIds];
    if (this.cached && this.cached.key.every((b, i) => b === key[i])) return this.cached.group;
    // Bind at most what the kernel can touch, so a larger logits buffer still fits the limit.
    const logitsBytes = Math.min(a.logits.size, this.maxRows * this.vocabSize * 4);
    const group = this.ctx.device.createBindGroup({
      label: this.variant.name,
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: a.logits, offset: 0, size: logitsBytes } },
        { binding: 1, resource: { buffer: a.rowParams } },
        { binding: 2, resource: { buffer: a.history } },
        { binding: 3, resource: { buffer: a.lastSampled } },
        { binding: 4, resource: { buffer: a.outIds } },
      ],
    });
    this.cached = { key, group };
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
