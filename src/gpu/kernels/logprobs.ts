/**
 * Log-probabilities of sampled tokens on the device (shaders/logprobs.wgsl): for the rows
 * whose request asks, a log-softmax of the raw logits (before penalties and temperature)
 * at the sampled id and at the `topN` most likely ids, written beside the sampled ids and
 * read back with them in the step's one readback.
 *
 * ```ts
 * const lp = new DeviceLogprobs(ctx, { vocabSize, maxRows });
 * const sampler = new LogprobsAroundSampler(wgslSampler, lp); // the forward pass records through it
 * await lp.prepare(subSteps);                          // compiles on first use, sizes the buffers
 * lp.writeRows(k, [5, undefined], subSteps);            // row 0 wants 5 alternatives, row 1 none
 * sampler.armedFor(new Map([[rowParams[k], k]]), () => forward.record(...)); // top, sample, pick
 * lp.copyForReadback(step, outIds, idCount);            // ids and records into one buffer
 * const { ids, logprobs } = await lp.read(idCount, topN, bounded);
  * ```
 *
 * Nothing here exists until a request asks for logprobs: requests without them add no
 * dispatch, no buffer and no readback.
 */
import { MAX_TOP_LOGPROBS, type SampledLogprobs, type SamplingParams } from "../../sampling/sampler.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { GpuStep } from "../step.ts";
import { ModelKernel } from "./kernel.ts";
import { defaultWorkgroupSize } from "./sample.ts";
import type { DeviceSampler, DeviceSamplerArgs } from "./sampling-hook.ts";

/** u32 words of one token's record: id, logprob, log-sum-exp, then MAX_TOP (id, logprob) pairs. */
export const LOGPROB_RECORD_WORDS = 3 + 2 * MAX_TOP_LOGPROBS;
/** Bytes of one LogprobRow (top_n, out_index). */
const ROW_BYTES = 8;
/** `top_n` of a row that wants nothing. */
const NONE = 0xffffffff;

/** The variant of one entry point (`top` or `pick`) for a vocabulary. */
export function logprobsVariant(entryPoint: "top" | "pick", vocabSize: number, workgroupSize: number): KernelVariant {
  return {
    name: `logprobs_${entryPoint}_v${vocabSize}_wg${workgroupSize}_t${MAX_TOP_LOGPROBS}`,
    file: "logprobs.wgsl",
    entryPoint,
    defines: { WG: workgroupSize, VOCAB: vocabSize, MAX_TOP: MAX_TOP_LOGPROBS },
  };
}

/** Sizes of {@link DeviceLogprobs}. */
export interface DeviceLogprobsOptions {
  readonly vocabSize: number;
  /** Most rows one sub-step samples (the sampler's maxRows). */
  readonly maxRows: number;
}

interface Buffers {
  readonly subSteps: number;
  /** A copy of each row's raw logits (the sampler overwrites the originals). */
  readonly raw: GPUBuffer;
  /** Per sub-step: maxRows LogprobRows. */
  readonly rows: readonly GPUBuffer[];
  /** subSteps × maxRows records. */
  readonly out: GPUBuffer;
  /** MAP_READ: the ids, then the records. */
  readonly readback: GPUBuffer;
}

/** The logprob kernels and their buffers, made on first use and grown on demand. */
export class DeviceLogprobs {
  readonly #ctx: GpuContext;
  readonly #vocab: number;
  readonly #maxRows: number;
  readonly #top: ModelKernel;
  readonly #pick: ModelKernel;
  #buffers: Buffers | undefined;
  /** Bind groups per sub-step, valid while the buffers they name stay. */
  readonly #groups = new Map<number, { top: GPUBindGroup; pick: GPUBindGroup; logits: GPUBuffer; outIds: GPUBuffer }>();

  constructor(ctx: GpuContext, options: DeviceLogprobsOptions) {
    this.#ctx = ctx;
    this.#vocab = options.vocabSize;
    this.#maxRows = options.maxRows;
    const wg = defaultWorkgroupSize(options.vocabSize);
    this.#top = new ModelKernel(ctx, logprobsVariant("top", options.vocabSize, wg));
    this.#pick = new ModelKernel(ctx, logprobsVariant("pick", options.vocabSize, 1));
  }

  /** Compiles both kernels (once) and makes the buffers hold `subSteps` sub-steps. */
  async prepare(subSteps: number): Promise<void> {
    await Promise.all([this.#top.prepare(), this.#pick.prepare()]);
    if (this.#buffers && this.#buffers.subSteps >= subSteps) return;
    this.destroy();
    this.#buffers = this.#createBuffers(Math.max(subSteps, 2 * (this.#buffers?.subSteps ?? 0)));
  }

  /**
   * Queues the LogprobRows of sub-step `k`: `wants[r]` alternatives for sample row r, or
   * undefined for none. Row r's record is the one of its id, `outIds[r × subSteps + k]`.
   */
  writeRows(k: number, wants: readonly (number | undefined)[], subSteps: number): void {
    const words = new Uint32Array(2 * wants.length);
    wants.forEach((n, r) => {
      words[2 * r] = n ?? NONE;
      words[2 * r + 1] = r * subSteps + k;
    });
    this.#ctx.allocator.writeBuffer(this.#ready().rows[k]!, 0, words);
  }

  /** Records `top` over `rows` rows of `logits` into `pass` (before the sampler overwrites them). */
  recordTop(pass: GPUComputePassEncoder, k: number, rows: number, logits: GPUBuffer, outIds: GPUBuffer): void {
    pass.setPipeline(this.#top.pipeline);
    pass.setBindGroup(0, this.#groupsFor(k, logits, outIds).top);
    pass.dispatchWorkgroups(rows);
  }

  /** Records `pick` over `rows` rows into `pass` (after the sampler wrote their ids to `outIds`). */
  recordPick(pass: GPUComputePassEncoder, k: number, rows: number, logits: GPUBuffer, outIds: GPUBuffer): void {
    pass.setPipeline(this.#pick.pipeline);
    pass.setBindGroup(0, this.#groupsFor(k, logits, outIds).pick);
    pass.dispatchWorkgroups(rows);
  }

  /** Records the copies of the first `count` ids and records into the readback buffer. */
  copyForReadback(step: GpuStep, outIds: GPUBuffer, count: number): void {
    const b = this.#ready();
    step.copyBuffer(outIds, 0, b.readback, 0, count * 4);
    step.copyBuffer(b.out, 0, b.readback, count * 4, count * LOGPROB_RECORD_WORDS * 4);
  }

  /**
   * Maps the readback (after the submission) and returns the `count` ids and, for each,
   * its record read as `topN[i]` alternatives (undefined: that row asked for none).
   */
  async read(
    count: number,
    topN: readonly (number | undefined)[],
    bounded: <T>(work: Promise<T>, what: string) => Promise<T>,
  ): Promise<{ ids: Int32Array; logprobs: (SampledLogprobs | undefined)[] }> {
    const b = this.#ready();
    const bytes = count * 4 * (1 + LOGPROB_RECORD_WORDS);
    await bounded(b.readback.mapAsync(GPUMapMode.READ, 0, bytes), "reading sampled ids and logprobs");
    try {
      this.#ctx.check();
      const data = b.readback.getMappedRange(0, bytes).slice(0);
      const ids = new Int32Array(data, 0, count);
      const words = new Uint32Array(data, count * 4);
      const floats = new Float32Array(data, count * 4);
      const logprobs = topN.map((n, i) => n === undefined ? undefined : recordAt(words, floats, i * LOGPROB_RECORD_WORDS, n));
      return { ids, logprobs };
    } finally {
      b.readback.unmap();
    }
  }

  /** Destroys the buffers (the kernels stay compiled for the next use). */
  destroy(): void {
    const b = this.#buffers;
    if (!b) return;
    const a = this.#ctx.allocator;
    for (const buffer of [b.raw, ...b.rows, b.out, b.readback]) a.destroy(buffer);
    this.#buffers = undefined;
    this.#groups.clear();
  }

  #ready(): Buffers {
    if (!this.#buffers) throw new Error("DeviceLogprobs used before prepare()");
    return this.#buffers;
  }

  #createBuffers(subSteps: number): Buffers {
    const a = this.#ctx.allocator;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const records = subSteps * this.#maxRows;
    return {
      subSteps,
      raw: a.createBuffer({ label: "raw logits for logprobs", size: this.#maxRows * this.#vocab * 4, usage }),
      rows: Array.from({ length: subSteps }, (_, k) =>
        a.createBuffer({ label: `logprob rows ${k}`, size: this.#maxRows * ROW_BYTES, usage })
      ),
      out: a.createBuffer({ label: "logprob records", size: records * LOGPROB_RECORD_WORDS * 4, usage }),
      readback: a.createBuffer({
        label: "sampled ids and logprobs readback",
        size: records * 4 * (1 + LOGPROB_RECORD_WORDS),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      }),
    };
  }

  #groupsFor(k: number, logits: GPUBuffer, outIds: GPUBuffer): { top: GPUBindGroup; pick: GPUBindGroup } {
    const cached = this.#groups.get(k);
    if (cached && cached.logits === logits && cached.outIds === outIds) return cached;
    const b = this.#ready();
    // Bind only the rows the kernel reads, so a larger logits buffer still fits the limit.
    const logitsRange = { buffer: logits, offset: 0, size: Math.min(logits.size, this.#maxRows * this.#vocab * 4) };
    const rows = b.rows[k]!;
    const groups = {
      top: this.#top.bindGroup(`top ${k}`, [logitsRange, rows, b.raw, b.out, null]),
      pick: this.#pick.bindGroup(`pick ${k}`, [null, rows, b.raw, b.out, outIds]),
      logits,
      outIds,
    };
    this.#groups.set(k, groups);
    return groups;
  }
}

/**
 * A {@link DeviceSampler} that records the logprob kernels around another sampler's
 * dispatch, for the sub-steps the runner armed: the model's forward pass records sampling
 * through this hook and need not know about logprobs. Unarmed (every step whose requests
 * ask for none) it is the inner sampler and nothing more.
 */
export class LogprobsAroundSampler implements DeviceSampler {
  readonly #inner: DeviceSampler;
  readonly #logprobs: DeviceLogprobs;
  /** While armed: the sub-step of each rowParams buffer the runner's tables use. */
  #armed: ReadonlyMap<GPUBuffer, number> | undefined;

  constructor(inner: DeviceSampler, logprobs: DeviceLogprobs) {
    this.#inner = inner;
    this.#logprobs = logprobs;
    if (inner.supports) this.supports = (p) => inner.supports!(p);
  }

  readonly supports?: (params: SamplingParams) => boolean;

  prepare(): Promise<void> {
    return this.#inner.prepare();
  }

  /**
   * Runs `body` (the recording of one step) with the logprob kernels around every sampling
   * whose `rowParams` is a key of `subStepOf` (the sub-step whose LogprobRows to use).
   */
  armedFor<T>(subStepOf: ReadonlyMap<GPUBuffer, number>, body: () => T): T {
    this.#armed = subStepOf;
    try {
      return body();
    } finally {
      this.#armed = undefined;
    }
  }

  record(pass: GPUComputePassEncoder, args: DeviceSamplerArgs): void {
    const k = this.#armed?.get(args.rowParams);
    if (k === undefined || args.rows === 0) return this.#inner.record(pass, args);
    this.#logprobs.recordTop(pass, k, args.rows, args.logits, args.outIds);
    this.#inner.record(pass, args);
    this.#logprobs.recordPick(pass, k, args.rows, args.logits, args.outIds);
  }
}

/** One record as {@link SampledLogprobs}, with `n` alternatives. */
function recordAt(words: Uint32Array, floats: Float32Array, at: number, n: number): SampledLogprobs {
  const topIds: number[] = [];
  const topLogprobs: number[] = [];
  for (let j = 0; j < n; j++) {
    topIds.push(words[at + 3 + 2 * j]!);
    topLogprobs.push(floats[at + 4 + 2 * j]!);
  }
  return { id: words[at]!, logprob: floats[at + 1]!, topIds, topLogprobs };
}
