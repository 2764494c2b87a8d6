/**
 * Where sampling plugs into the GPU runner: a {@link DeviceSampler} records, into the
 * step's compute pass, the dispatches that turn rows of logits into token ids, writing
 * each id to `outIds[outIndex]` and `lastSampled[slot]` (the next step's embedding lookup
 * reads it there, so lookahead steps never wait for the CPU).
 *
 * Each row's request is a `SampleRow` in `rowParams` (WGSL layout below, 48 bytes, written
 * by {@link writeSampleRow}). The penalty history ring (kernels/history.ts) is passed for
 * samplers that apply penalties. The implementation is the WGSL sampler (kernels/sample.ts).
 *
 * ```wgsl
 * struct SampleRow {
 *   slot: u32, sampleIndex: u32, seed: u32, topK: u32,
 *   temperature: f32, topP: f32, minP: f32, repeatPenalty: f32,
 *   presencePenalty: f32, frequencyPenalty: f32, penaltyWindow: u32, outIndex: u32,
 * }
 * ```
 */
import type { SamplingParams } from "../../sampling/sampler.ts";

/** Bytes of one SampleRow. */
export const SAMPLE_ROW_BYTES = 48;

/** One row's sampling request, as the device reads it. */
export interface SampleRow {
  /** KV slot: `lastSampled[slot]` receives the id; the penalties read this slot's history. */
  readonly slot: number;
  /** The generator's counter for this draw. */
  readonly sampleIndex: number;
  readonly seed: number;
  readonly topK: number;
  readonly temperature: number;
  readonly topP: number;
  readonly minP: number;
  readonly repeatPenalty: number;
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  readonly penaltyWindow: number;
  /** Index in `outIds` that receives the id. */
  readonly outIndex: number;
}

/** The SampleRow of a request's {@link SamplingParams}. */
export function sampleRowOf(p: SamplingParams, slot: number, sampleIndex: number, outIndex: number): SampleRow {
  return {
    slot,
    sampleIndex,
    seed: p.seed,
    topK: p.topK,
    temperature: p.temperature,
    topP: p.topP,
    minP: p.minP,
    repeatPenalty: p.repeatPenalty,
    presencePenalty: p.presencePenalty,
    frequencyPenalty: p.frequencyPenalty,
    penaltyWindow: p.penaltyWindow,
    outIndex,
  };
}

/**
 * Writes `row` at byte `offset` of `view` in the WGSL layout. The seed wraps to a u32 as in
 * the CPU sampler; counts saturate (a `penaltyWindow` of Infinity means "everything", not 0).
 */
export function writeSampleRow(view: DataView, offset: number, row: SampleRow): void {
  view.setUint32(offset, row.slot, true);
  view.setUint32(offset + 4, saturateU32(row.sampleIndex), true);
  view.setUint32(offset + 8, row.seed >>> 0, true);
  view.setUint32(offset + 12, saturateU32(row.topK), true);
  view.setFloat32(offset + 16, row.temperature, true);
  view.setFloat32(offset + 20, row.topP, true);
  view.setFloat32(offset + 24, row.minP, true);
  view.setFloat32(offset + 28, row.repeatPenalty, true);
  view.setFloat32(offset + 32, row.presencePenalty, true);
  view.setFloat32(offset + 36, row.frequencyPenalty, true);
  view.setUint32(offset + 40, saturateU32(row.penaltyWindow), true);
  view.setUint32(offset + 44, row.outIndex, true);
}

function saturateU32(v: number): number {
  if (Number.isNaN(v) || v <= 0) return 0;
  return v >= 0xffffffff ? 0xffffffff : Math.floor(v);
}

/** Buffers a sampler reads and writes in one sub-step. */
export interface DeviceSamplerArgs {
  /** f32 logits, `rows` rows of the vocabulary, row r at r × vocab. */
  readonly logits: GPUBuffer;
  readonly rows: number;
  /** `rows` SampleRows. */
  readonly rowParams: GPUBuffer;
  /** The penalty history ring (u32, layout in kernels/history.ts). */
  readonly history: GPUBuffer;
  /** i32 per slot; receives each row's id at its slot. */
  readonly lastSampled: GPUBuffer;
  /** i32; receives each row's id at its outIndex. */
  readonly outIds: GPUBuffer;
}

/** Samples rows of logits on the device. */
export interface DeviceSampler {
  /** Compiles what `record` will use. */
  prepare(): Promise<void>;
  /** Records the sampling of `args.rows` rows into `pass` (no submission). */
  record(pass: GPUComputePassEncoder, args: DeviceSamplerArgs): void;
  /**
   * Whether this sampler honours `params`; the runner refuses other requests up front.
   * Absent means every request is supported.
   */
  supports?(params: SamplingParams): boolean;
}
