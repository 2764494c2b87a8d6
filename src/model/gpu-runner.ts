/**
 * The WebGPU {@link ModelRunner}: weights quantized on the GPU, a paged KV pool shared by
 * every sequence, sampling on the device, and lookahead decode steps that never wait for
 * the CPU.
 *
 * ```ts
 * const runner = await GpuRunner.load(file, { maxSlots: 4, maxBatchTokens: 256, onProgress });
 * runner.resetSlot(0);
 * const pages = [7, 3];                             // positions 0..63 with pages of 32
 * const [ids] = await runner.step([{ slot: 0, pos: 0, tokens: prompt, sampling: GREEDY, sampleIndex: 0, pages }], 3);
 * // ids: 4 tokens: the one after the prompt, then 3 lookahead decode steps, one readback
 * await runner.dispose();                          // every buffer destroyed (and the device, if ours)
 * ```
 *
 * One `step()` is recorded into as few compute passes as the GPU's submission budget
 * allows (usually one per sub-step or fewer), submitted, and read back once: the batch
 * (prompt chunks and decode tokens of several slots mixed) and then `extraSteps` decode
 * sub-steps for the entries that sample, each embedding the id the previous sub-step
 * sampled straight from `lastSampled` on the device. Only the sampled ids come back.
 *
 * The KV pool (gpu-forward.ts, kernels/kv-pool.ts) holds `pageCount` pages per layer, in
 * as many storage bindings as it takes. Each step uploads the page tables of its entries'
 * slots (only the entries that changed) and gives every fed token its pool row, where the
 * rope kernel writes its K and V; attention reads through the page tables. Without
 * `kvCacheBytes`, the pool is sized from the device's limits (see {@link planKvPool}).
 *
 * Sampling is the WGSL sampler (gpu/kernels/sample.ts): greedy, temperature, top-k/p,
 * min-p and penalties, the same draws as the CPU sampler (sampling/sampler.ts). A request
 * it does not support is refused with InvalidRequestError `SAMPLER_UNAVAILABLE` before
 * anything runs.
 *
 * Constrained decoding: an entry's {@link BatchEntry.tokenMask} is uploaded with the step and
 * applied to its first sample's logits by the token-mask kernel (gpu/kernels/token-mask.ts)
 * right before the sampler and after the logprob kernels' copy, so logprobs stay those of
 * the raw logits. Steps without a mask upload and dispatch nothing for it.
 */
import { yieldToEventLoop } from "../yield.ts";
import { GpuError, InvalidArgumentError, InvalidRequestError } from "../errors.ts";
import { type BatchEntry, type KvPool, type LoadProgress, type ModelRunner, type PageCopy, type Pooling, RunnerDisposedError, type RunnerMemory, type RunnerSizes, type SampledLogprobs, type SamplingParams, type StepIds, type StepProfile, checkLogprobsCount } from "./runner.ts";
import type { GGUFFile } from "../gguf/reader.ts";
import { createGpuContext, type GpuContext, type GpuContextOptions, isSoftwareAdapter } from "../gpu/device.ts";
import { HISTORY_CAP, seedHistorySlot } from "../gpu/kernels/history.ts";
import type { MatrixKernelsOptions } from "../gpu/kernels/matmul.ts";
import { createDeviceSampler } from "../gpu/kernels/sample.ts";
import { DeviceLogprobs, LogprobsAroundSampler } from "../gpu/kernels/logprobs.ts";
import { DeviceTokenMask, TokenMaskAroundSampler, tokenMaskWords } from "../gpu/kernels/token-mask.ts";
import { SAMPLE_ROW_BYTES, sampleRowOf, writeSampleRow } from "../gpu/kernels/sampling-hook.ts";
import { FROM_LAST_SAMPLED, stepInfoBinding, type TokenRecord, writeStepInfo, writeTokenRecord, TOKEN_RECORD_BYTES } from "../gpu/kernels/tokens.ts";
import { PoolSumKernel } from "../gpu/kernels/pool.ts";
import { GpuProfiler } from "../gpu/profiler.ts";
import type { KvPoolLayout } from "../gpu/kernels/kv-pool.ts";
import { GpuStep } from "../gpu/step.ts";
import { type ModelConfig, modelConfigFromGGUF } from "./config.ts";
import { GpuForward, type KvCacheType, kvPageBytes, kvPagesPerBinding, maxKvBindings, Recorder } from "./gpu-forward.ts";
import { loadGpuWeights } from "./gpu-weights.ts";
import { checkCopies, checkDisjointWrites, checkPageTable, identityPages, pagesFor, resolveContextLength, resolvePageSize } from "./kv-pool.ts";

/** Options of {@link GpuRunner.load}: the engine's sizes plus GPU choices. */
export interface GpuRunnerOptions extends RunnerSizes {
  /** WebGPU entry point (default `navigator.gpu`), e.g. Dawn's in Node. */
  readonly gpu?: GPU;
  /** A ready device; the runner then leaves its destruction to the caller. */
  readonly device?: GPUDevice;
  /** More device options (limit overrides for tests, disabled features). */
  readonly context?: Omit<GpuContextOptions, "gpu" | "device">;
  /**
   * KV pool element type. `auto` (default): f32 when an f32 pool of at most 1 GiB holds as
   * many pages as an f16 one would (up to maxSlots full contexts), else f16. f16 halves
   * the pool and moves logits by about 1e-3; it is stored as packed pairs, so it needs no
   * `shader-f16`.
   */
  readonly kvCacheType?: KvCacheType | "auto";
  /** Lookahead steps the per-step tables are first sized for (default 8; they grow on demand). */
  readonly lookahead?: number;
  /**
   * GPU work per submission, in multiply-adds (weight reads count 16 per byte per 64-token
   * tile); a step past it is submitted in several parts. Default 4e10 (a few ms on a large
   * GPU; Dawn has crashed on submissions of ~60 ms), and 4e9 on a software adapter.
   */
  readonly maxSubmitWork?: number;
  /** Positions whose logits `logits()` computes per submission (default 64). */
  readonly logitRows?: number;
  /**
   * Bound on the GPU's silence while we wait for it, ms (default 60 s): a wait fails with
   * GPU_TIMEOUT once no submission has finished for this long. Long prefills are split into
   * submissions of `maxSubmitWork`, so the bound holds on any adapter however slow.
   */
  readonly timeoutMs?: number;
  /** Which WebGPU implementation made `gpu` (`dawn`, `deno`, `browser`), for the description. */
  readonly provider?: string;
  /** Matrix kernel choices (tuning; the defaults pick per adapter). */
  readonly matrix?: MatrixKernelsOptions;
}

const DEFAULT_SUBMIT_WORK = 4e10;
/**
 * The default on a software adapter. 4e10 multiply-adds (13 layers of Llama 3.2 1B over a
 * 40-token prompt) took over a minute in Chromium on SwiftShader, on a busy 2-core
 * machine, and so passed the GPU wait's bound of silence (`timeoutMs`); a tenth of that
 * is about one layer of such a prefill, a few seconds there.
 */
const SOFTWARE_SUBMIT_WORK = 4e9;

/** The submission budget a runner on `ctx` uses unless told otherwise. */
export function defaultSubmitWork(ctx: GpuContext): number {
  return isSoftwareAdapter(ctx) ? SOFTWARE_SUBMIT_WORK : DEFAULT_SUBMIT_WORK;
}
const AUTO_F16_ABOVE_BYTES = 1024 ** 3;
/**
 * The KV pool's default budget when none is given: WebGPU does not report device memory,
 * and 1 GiB sits beside a 1B model's weights on a laptop GPU or in a browser tab while
 * holding 4 full 8k contexts of Llama 3.2 1B in f16 (32 KiB per position).
 */
export const DEFAULT_KV_BUDGET_BYTES = 1024 ** 3;

/** Everything sampled in one call is read back through this plan. */
interface SamplingRow {
  readonly entry: number;
  readonly slot: number;
  readonly sampling: SamplingParams;
  readonly sampleIndex: number;
  /** Position fed in the first lookahead sub-step. */
  readonly nextPos: number;
  /** The entry's page table. */
  readonly pages: readonly number[];
  /** Alternatives to report with each sampled id (capped at the vocabulary); absent: no logprobs. */
  readonly logprobs?: number;
  /** The first sample's allowed tokens (constrained decoding); absent: unconstrained. */
  readonly tokenMask?: Uint32Array;
}

/** The logprob kernels and the sampler hook that records them (see kernels/logprobs.ts). */
interface LogprobParts {
  readonly kernels: DeviceLogprobs;
  readonly sampler: LogprobsAroundSampler;
}

/** The token-mask kernel and the sampler hook that records it (see kernels/token-mask.ts). */
interface MaskParts {
  readonly kernel: DeviceTokenMask;
  readonly sampler: TokenMaskAroundSampler;
}

/** A {@link ModelRunner} on WebGPU. */
export class GpuRunner implements ModelRunner {
  readonly config: ModelConfig;
  readonly kvPool: KvPool;
  readonly maxSlots: number;
  readonly contextLength: number;
  readonly maxBatchTokens: number;
  readonly description: string;
  /** Token masks run on the device (kernels/token-mask.ts). */
  readonly masksTokens = true;
  readonly #ctx: GpuContext;
  readonly #forward: GpuForward;
  readonly #options: GpuRunnerOptions;
  readonly #hasSampled: boolean[];
  /** What each slot's page table on the device holds (-1: unknown), to upload only changes. */
  readonly #pageTables: Int32Array[];
  readonly #listeners: ((error: Error) => void)[] = [];
  #busy: Promise<unknown> = Promise.resolve();
  /** Set while `profileStep` records: every GpuStep then times its dispatches. */
  #profiler: GpuProfiler | undefined;
  #disposed = false;
  #disposing: Promise<void> | undefined;
  #reportedFailure = false;
  /** Mean pooling's kernel and sum row (see `#meanPool`); destroyed with the context. */
  #pool: { kernel: PoolSumKernel; sum: GPUBuffer } | undefined;

  readonly #logprobs: LogprobParts;
  readonly #mask: MaskParts;

  private constructor(ctx: GpuContext, forward: GpuForward, options: GpuRunnerOptions, logprobs: LogprobParts, mask: MaskParts) {
    this.#ctx = ctx;
    this.#logprobs = logprobs;
    this.#mask = mask;
    this.#forward = forward;
    this.#options = options;
    this.config = forward.config;
    this.maxSlots = forward.sizes.maxSlots;
    this.contextLength = forward.sizes.contextLength;
    this.maxBatchTokens = forward.sizes.maxTokens;
    this.kvPool = { pageSize: forward.sizes.pageSize, pageCount: forward.sizes.pageCount, bytes: forward.kvBytes };
    this.#pageTables = Array.from({ length: this.maxSlots }, () => new Int32Array(forward.maxPages).fill(-1));
    const adapter = ctx.adapterInfo?.description || ctx.adapterInfo?.vendor || "injected device";
    this.description = `webgpu/${options.provider ?? "injected"} (${adapter}; KV cache ${forward.sizes.kvCacheType}, ${forward.sizes.pageCount} page${forward.sizes.pageCount === 1 ? "" : "s"} of ${forward.sizes.pageSize})`;
    this.#hasSampled = Array.from({ length: this.maxSlots }, () => false);
    // Through the context, not the device: a listener on a caller's device would keep
    // this runner (pipelines, bind groups) alive after dispose for as long as the device.
    ctx.onFailure(() => this.#notifyFailure());
  }

  /**
   * Uploads the model in `file` and prepares every pipeline. On failure (unsupported tensor
   * type, abort, out of memory) everything made so far is destroyed before rethrowing.
   */
  static async load(file: GGUFFile, options: GpuRunnerOptions): Promise<GpuRunner> {
    const config = modelConfigFromGGUF(file);
    const maxSlots = positiveInteger("maxSlots", options.maxSlots);
    const maxBatchTokens = positiveInteger("maxBatchTokens", options.maxBatchTokens);
    const contextLength = resolveContextLength(options.contextLength, config.contextLength);
    const ctx = await createGpuContext({ ...options.context, gpu: options.gpu, device: options.device });
    // A cancelled load stops between pipelines too, not only between tensors.
    const stopAbortingCompiles = ctx.pipelines.abortCompilesOn(options.signal);
    // Compiling follows the weights and takes most of a load on a software GPU: report it.
    let weightsSoFar: LoadProgress = { phase: "weights", bytesLoaded: 0, bytesTotal: 0, tensorsLoaded: 0, tensorsTotal: 0 };
    const onProgress = (p: LoadProgress) => {
      weightsSoFar = p;
      options.onProgress?.(p);
    };
    const stopReportingCompiles = ctx.pipelines.reportCompilesTo((pipelinesDone, pipelinesTotal) =>
      options.onProgress?.({ ...weightsSoFar, phase: "compile", pipelinesDone, pipelinesTotal })
    );
    try {
      options.signal?.throwIfAborted(); // the device took a while: no weights for a cancelled load
      if (maxBatchTokens > ctx.limits.maxComputeWorkgroupsPerDimension) {
        throw new InvalidArgumentError("maxBatchTokens", `${maxBatchTokens} exceeds ${ctx.limits.maxComputeWorkgroupsPerDimension} work-groups per dimension`);
      }
      const weights = await loadGpuWeights(ctx, file, config, { onProgress, signal: options.signal });
      const maxSampleRows = Math.min(maxSlots, maxBatchTokens);
      const logitRowsWanted = Math.max(maxSampleRows, Math.min(maxBatchTokens, options.logitRows ?? 64));
      const logitRows = Math.min(logitRowsWanted, Math.floor(ctx.limits.maxStorageBufferBindingSize / (config.vocabSize * 4)));
      if (logitRows < maxSampleRows) {
        throw new GpuError("LIMIT_TOO_LOW", `${maxSampleRows} rows of ${config.vocabSize} logits exceed one storage binding; lower maxSlots`, {
          limit: "maxStorageBufferBindingSize",
          needed: maxSampleRows * config.vocabSize * 4,
          available: ctx.limits.maxStorageBufferBindingSize,
        });
      }
      // Logprob and mask kernels ride on the sampler's hook; compiled and sized on first use
      // only. Logprobs wrap the mask: their raw copy comes first, so they ignore the grammar.
      const kernels = new DeviceLogprobs(ctx, { vocabSize: config.vocabSize, maxRows: maxSampleRows });
      const maskKernel = new DeviceTokenMask(ctx, { vocabSize: config.vocabSize, maxRows: maxSampleRows });
      const maskSampler = new TokenMaskAroundSampler(await createDeviceSampler(ctx, { vocabSize: config.vocabSize, maxRows: maxSampleRows }), maskKernel);
      const sampler = new LogprobsAroundSampler(maskSampler, kernels);
      options.signal?.throwIfAborted();
      const pool = planKvPool(ctx, config, {
        type: options.kvCacheType ?? "auto",
        maxSlots,
        contextLength,
        pageSize: resolvePageSize(options.pageSize),
        kvCacheBytes: options.kvCacheBytes,
      });
      const forward = await GpuForward.create(ctx, config, weights, {
        maxSlots,
        contextLength,
        pageSize: pool.pageSize,
        pageCount: pool.pageCount,
        maxTokens: maxBatchTokens,
        maxSampleRows,
        logitRows,
        kvCacheType: pool.type,
        subSteps: 1 + Math.max(0, Math.floor(options.lookahead ?? 8)),
      }, sampler, options.matrix);
      options.signal?.throwIfAborted();
      return new GpuRunner(ctx, forward, options, { kernels, sampler }, { kernel: maskKernel, sampler: maskSampler });
    } catch (error) {
      await ctx.destroy();
      throw error;
    } finally {
      stopAbortingCompiles();
      stopReportingCompiles();
    }
  }

  memory(): RunnerMemory {
    const a = this.#ctx.allocator;
    return { liveBuffers: a.liveBuffers, liveBytes: a.liveBytes, peakBytes: a.peakBytes };
  }
  /** Bytes of the KV cache. */
  get kvCacheBytes(): number {
    return this.#forward.kvBytes;
  }
  /** How each layer's pool is spread over storage bindings. */
  get kvLayout(): KvPoolLayout {
    return this.#forward.kvLayout;
  }
  /** Bytes of the weights. */
  get weightBytes(): number {
    return this.#forward.weights.byteLength;
  }

  resetSlot(slot: number, history: readonly number[] = []): void {
    this.#checkSlot(slot);
    this.#checkTokens(history, "history");
    seedHistorySlot(this.#ctx, this.#forward.history, slot, history);
    this.#hasSampled[slot] = false;
  }

  copyPages(copies: readonly PageCopy[]): void {
    if (this.#disposed) throw new RunnerDisposedError();
    checkCopies(copies, this.kvPool.pageCount);
    const list = copies.map(({ from, to }) => ({ from, to }));
    // In the step chain, so it lands after the steps called before and before those after.
    this.#exclusive(() => {
      this.#ctx.check();
      const encoder = this.#ctx.device.createCommandEncoder({ label: "KV page copies" });
      this.#forward.recordPageCopies(encoder, list);
      this.#ctx.submit([encoder.finish()]);
      return Promise.resolve();
    }).catch(() => undefined); // a failure here is the device's: the next step reports it
  }

  step(batch: readonly BatchEntry[], extraSteps: number): Promise<StepIds> {
    return this.#exclusive(() => this.#step(batch, extraSteps));
  }

  /** Like `step()`, with every dispatch timed on the GPU (see {@link GpuProfiler}). */
  profileStep(batch: readonly BatchEntry[], extraSteps: number): Promise<StepProfile> {
    return this.#exclusive(async () => {
      // Generous: a layer records about a dozen dispatches, more where weights are split.
      const perSubStep = 8 + 32 * this.config.nLayers;
      const profiler = new GpuProfiler(this.#ctx, perSubStep * (1 + Math.max(0, Math.floor(extraSteps))));
      this.#profiler = profiler;
      try {
        const ids = await this.#step(batch, extraSteps);
        return { ids, passes: await this.#withTimeout(profiler.read(), "reading the profile"), weightBytes: this.weightBytes };
      } finally {
        this.#profiler = undefined;
        profiler.destroy();
      }
    });
  }

  embed(slot: number, tokens: readonly number[], pages: readonly number[], pooling: Pooling): Promise<Float32Array> {
    return this.#exclusive(() => this.#embed(slot, tokens, pages, pooling));
  }

  logits(slot: number, pos: number, tokens: readonly number[], pages?: readonly number[]): Promise<Float32Array[]> {
    return this.#exclusive(() => this.#logits(slot, pos, tokens, pages ?? identityPages(pos + tokens.length, this.kvPool.pageSize)));
  }

  onFailure(listener: (error: Error) => void): void {
    this.#listeners.push(listener);
  }

  /** Releases everything; every call returns the same promise, settled once the device is released. */
  dispose(): Promise<void> {
    this.#disposing ??= this.#release();
    return this.#disposing;
  }

  async #release(): Promise<void> {
    this.#disposed = true;
    await this.#busy.catch(() => undefined);
    this.#forward.destroy();
    await this.#ctx.destroy();
  }

  // -------------------------------------------------------------------------------------

  /** Runs `body` after every earlier call has settled, so steps never interleave. */
  #exclusive<T>(body: () => Promise<T>): Promise<T> {
    if (this.#disposed) return Promise.reject(new RunnerDisposedError());
    const run = this.#busy.then(body, body);
    this.#busy = run.catch(() => undefined);
    return run;
  }

  async #step(batch: readonly BatchEntry[], extraSteps: number): Promise<StepIds> {
    this.#ctx.check();
    const f = this.#forward;
    const extra = Math.max(0, Math.floor(extraSteps));
    const { tokens, rows, samples } = this.#plan(batch, extra);
    if (tokens.length === 0) return batch.map(() => new Int32Array(0));
    const subSteps = samples.length > 0 ? 1 + extra : 1;
    f.ensureSubSteps(subSteps);
    const t = f.tables;
    const wantsLogprobs = samples.some((s) => s.logprobs !== undefined);
    if (wantsLogprobs) await this.#logprobs.kernels.prepare(subSteps);
    const wantsMask = samples.some((s) => s.tokenMask !== undefined);
    if (wantsMask) await this.#mask.kernel.prepare();

    // Tables of every sub-step, uploaded before the first submission.
    const lookahead = subSteps > 1;
    const nRecords = lookahead ? f.tokenBase(subSteps - 1) + samples.length : tokens.length;
    const tokenView = new DataView(new ArrayBuffer(nRecords * TOKEN_RECORD_BYTES));
    tokens.forEach((r, i) => writeTokenRecord(tokenView, i, r));
    const infoView = new DataView(new ArrayBuffer(f.infoOffset(subSteps)));
    writeStepInfo(infoView, 0, { nTokens: tokens.length, tokenBase: 0, nRows: rows.length, rowBase: 0 });
    const rowWords = new Uint32Array(lookahead ? f.rowBase(subSteps - 1) + samples.length : rows.length);
    rowWords.set(rows, 0);
    for (let k = 1; k < subSteps; k++) {
      samples.forEach((s, r) => {
        const pos = s.nextPos + k - 1;
        writeTokenRecord(tokenView, f.tokenBase(k) + r, { id: FROM_LAST_SAMPLED, slot: s.slot, pos, seq: 0, last: true, kvRow: this.#kvRow(s.pages, pos) });
        rowWords[f.rowBase(k) + r] = r;
      });
      writeStepInfo(infoView, f.infoOffset(k), { nTokens: samples.length, tokenBase: f.tokenBase(k), nRows: samples.length, rowBase: f.rowBase(k) });
    }
    const a = this.#ctx.allocator;
    a.writeBuffer(t.tokens, 0, tokenView);
    a.writeBuffer(t.info, 0, infoView);
    if (rowWords.length > 0) a.writeBuffer(t.rows, 0, rowWords);
    for (let k = 0; k < subSteps && samples.length > 0; k++) {
      const view = new DataView(new ArrayBuffer(samples.length * SAMPLE_ROW_BYTES));
      samples.forEach((s, r) => writeSampleRow(view, r * SAMPLE_ROW_BYTES, sampleRowOf(s.sampling, s.slot, s.sampleIndex + k, r * subSteps + k)));
      a.writeBuffer(t.rowParams[k]!, 0, view);
      if (wantsLogprobs) this.#logprobs.kernels.writeRows(k, samples.map((s) => s.logprobs), subSteps);
    }

    const rec = this.#recorder("step");
    // The logprob kernels are recorded around the sampler of every sub-step, only when asked.
    const subStepOf = new Map<GPUBuffer, number>(wantsLogprobs ? t.rowParams.slice(0, subSteps).map((b, k) => [b, k]) : []);
    // A mask covers an entry's first sample: sub-step 0's rows, in the order of `samples`.
    const masked = wantsMask ? this.#mask.kernel.upload(samples.map((s) => s.tokenMask), (r) => `batch[${samples[r]!.entry}].tokenMask`) : 0;
    this.#mask.sampler.armedFor(t.rowParams[0]!, masked, () =>
      this.#logprobs.sampler.armedFor(subStepOf, () => this.#recordSubSteps(rec, tokens, rows, samples, subSteps))
    );
    if (samples.length === 0) {
      rec.step.submit();
      this.#ctx.check();
      return batch.map(() => new Int32Array(0));
    }
    const count = samples.length * subSteps;
    let ids: Int32Array;
    let logprobs: (SampledLogprobs | undefined)[] | undefined;
    if (wantsLogprobs) {
      // Ids and logprob records land in one buffer: still one readback per step.
      this.#logprobs.kernels.copyForReadback(rec.step, t.outIds, count);
      rec.step.submit();
      const topN = samples.flatMap((s) => Array.from({ length: subSteps }, () => s.logprobs));
      ({ ids, logprobs } = await this.#logprobs.kernels.read(count, topN, (work, what) => this.#withTimeout(work, what)));
    } else {
      rec.step.copyBuffer(t.outIds, 0, t.readback, 0, count * 4);
      rec.step.submit();
      ids = await this.#map(t.readback, count * 4);
    }
    for (const s of samples) this.#hasSampled[s.slot] = true;
    const results: StepIds = batch.map(() => new Int32Array(0));
    samples.forEach((s, r) => {
      results[s.entry] = ids.slice(r * subSteps, (r + 1) * subSteps);
    });
    if (!logprobs) return results;
    const perEntry: (SampledLogprobs[] | undefined)[] = batch.map(() => undefined);
    samples.forEach((s, r) => {
      if (s.logprobs !== undefined) perEntry[s.entry] = logprobs.slice(r * subSteps, (r + 1) * subSteps) as SampledLogprobs[];
    });
    return Object.assign(results, { logprobs: perEntry });
  }

  /** Records the step's sub-steps: the batch, then each lookahead decode step. */
  #recordSubSteps(rec: Recorder, tokens: readonly TokenRecord[], rows: readonly number[], samples: readonly SamplingRow[], subSteps: number): void {
    const f = this.#forward;
    const qDim2 = 2 * this.config.nHeads * this.config.headDim;
    f.record(rec, 0, tokens.length, rows.length, samples.length > 0, attentionWork(tokens, qDim2), maxKeys(tokens));
    for (let k = 1; k < subSteps; k++) {
      const work = samples.reduce((sum, s) => sum + (s.nextPos + k) * qDim2, 0);
      // Sub-step k feeds position nextPos + k - 1, which attends over nextPos + k positions.
      f.record(rec, k, samples.length, samples.length, true, work, Math.max(...samples.map((s) => s.nextPos + k)));
    }
  }

  async #logits(slot: number, pos: number, tokens: readonly number[], pages: readonly number[]): Promise<Float32Array[]> {
    this.#ctx.check();
    this.#checkSlot(slot);
    this.#checkTokens(tokens, "tokens");
    if (!Number.isInteger(pos) || pos < 0 || pos + tokens.length > this.contextLength) {
      throw new InvalidArgumentError("pos", `positions ${pos}..${pos + tokens.length - 1} do not fit the context of ${this.contextLength}`);
    }
    checkPageTable(pages, pos + tokens.length - 1, this.kvPool.pageSize, this.kvPool.pageCount, "logits");
    this.#uploadPageTable(slot, pages, pos + tokens.length - 1);
    const f = this.#forward;
    const vocab = this.config.vocabSize;
    const chunkSize = Math.min(this.maxBatchTokens, f.sizes.logitRows);
    const out: Float32Array[] = [];
    const a = this.#ctx.allocator;
    for (let start = 0; start < tokens.length; start += chunkSize) {
      const chunk = tokens.slice(start, start + chunkSize);
      const records: TokenRecord[] = chunk.map((id, i) => {
        const p = pos + start + i;
        return { id, slot, pos: p, seq: i, last: i === chunk.length - 1, kvRow: this.#kvRow(pages, p) };
      });
      const view = new DataView(new ArrayBuffer(chunk.length * TOKEN_RECORD_BYTES));
      records.forEach((r, i) => writeTokenRecord(view, i, r));
      a.writeBuffer(f.tables.tokens, 0, view);
      a.writeBuffer(f.tables.rows, 0, Uint32Array.from(chunk, (_, i) => i));
      const info = new DataView(new ArrayBuffer(16));
      writeStepInfo(info, 0, { nTokens: chunk.length, tokenBase: 0, nRows: chunk.length, rowBase: 0 });
      a.writeBuffer(f.tables.info, 0, info);
      const rec = this.#recorder("logits");
      f.record(rec, 0, chunk.length, chunk.length, false, attentionWork(records, 2 * this.config.nHeads * this.config.headDim), maxKeys(records));
      rec.step.submit();
      const data = new Float32Array(await this.#withTimeout(a.readBuffer(f.act.logits, 0, chunk.length * vocab * 4), "reading logits"));
      this.#ctx.check();
      for (let i = 0; i < chunk.length; i++) out.push(data.slice(i * vocab, (i + 1) * vocab));
    }
    return out;
  }

  /**
   * The forward pass over `tokens` in chunks, stopping each at the output norm; only the
   * pooled row comes back. Last (and CLS, which feeds only the first token: attention is
   * causal) gathers one row of the final chunk; mean adds every chunk's rows into a sum
   * on the device (kernels/pool.ts) and divides here.
   */
  async #embed(slot: number, tokens: readonly number[], pages: readonly number[], pooling: Pooling): Promise<Float32Array> {
    this.#ctx.check();
    this.#checkSlot(slot);
    this.#checkTokens(tokens, "tokens");
    const fed = pooling === "cls" ? tokens.slice(0, 1) : tokens;
    if (fed.length === 0 || fed.length > this.contextLength) {
      throw new InvalidArgumentError("tokens", `${fed.length} tokens do not fit a context of 1..${this.contextLength}`);
    }
    checkPageTable(pages, fed.length - 1, this.kvPool.pageSize, this.kvPool.pageCount, "embed");
    this.#uploadPageTable(slot, pages, fed.length - 1);
    const f = this.#forward;
    const width = this.config.nEmbd;
    const a = this.#ctx.allocator;
    const mean = pooling === "mean" ? await this.#meanPool() : undefined;
    if (mean) a.writeBuffer(mean.sum, 0, new Float32Array(width));
    const chunkSize = Math.min(this.maxBatchTokens, f.sizes.logitRows);
    for (let start = 0; start < fed.length; start += chunkSize) {
      const chunk = fed.slice(start, start + chunkSize);
      const isLast = start + chunk.length === fed.length;
      const records: TokenRecord[] = chunk.map((id, i) => {
        const p = start + i;
        return { id, slot, pos: p, seq: i, last: i === chunk.length - 1, kvRow: this.#kvRow(pages, p) };
      });
      const rows = mean ? chunk.map((_, i) => i) : isLast ? [chunk.length - 1] : [];
      const view = new DataView(new ArrayBuffer(chunk.length * TOKEN_RECORD_BYTES));
      records.forEach((r, i) => writeTokenRecord(view, i, r));
      a.writeBuffer(f.tables.tokens, 0, view);
      if (rows.length > 0) a.writeBuffer(f.tables.rows, 0, Uint32Array.from(rows));
      const info = new DataView(new ArrayBuffer(16));
      writeStepInfo(info, 0, { nTokens: chunk.length, tokenBase: 0, nRows: rows.length, rowBase: 0 });
      a.writeBuffer(f.tables.info, 0, info);
      const rec = this.#recorder("embed");
      f.record(rec, 0, chunk.length, rows.length, false, attentionWork(records, 2 * this.config.nHeads * this.config.headDim), maxKeys(records), "hidden");
      if (mean) mean.kernel.record(rec.step, mean.kernel.bind({ rows: f.act.xo, sum: mean.sum, step: stepInfoBinding(f.tables.info, 0, f.infoOffset(1)) }));
      rec.step.submit();
    }
    const source = mean ? mean.sum : f.act.xo;
    const row = new Float32Array(await this.#withTimeout(a.readBuffer(source, 0, width * 4), "reading the embedding"));
    this.#ctx.check();
    if (mean) for (let i = 0; i < width; i++) row[i] = row[i]! / fed.length;
    return row;
  }

  /** The mean-pooling kernel and its running-sum row, made on the first mean-pooled embedding. */
  async #meanPool(): Promise<{ kernel: PoolSumKernel; sum: GPUBuffer }> {
    if (!this.#pool) {
      const kernel = new PoolSumKernel(this.#ctx, { width: this.config.nEmbd });
      await kernel.prepare();
      const sum = this.#ctx.allocator.createBuffer({
        label: "embedding sum",
        size: this.config.nEmbd * 4,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      this.#pool = { kernel, sum };
    }
    return this.#pool;
  }

  /** Checks a batch and lays out its first sub-step: token records, logit rows, sampling rows. */
  #plan(batch: readonly BatchEntry[], extra: number): { tokens: TokenRecord[]; rows: number[]; samples: SamplingRow[] } {
    const tokens: TokenRecord[] = [];
    const rows: number[] = [];
    const samples: SamplingRow[] = [];
    const seen = new Set<number>();
    const writes: { pages: readonly number[]; first: number; last: number }[] = [];
    batch.forEach((e, entry) => {
      const where = `batch[${entry}]`;
      this.#checkSlot(e.slot);
      if (seen.has(e.slot)) throw new InvalidArgumentError(where, `slot ${e.slot} appears twice in one step`);
      seen.add(e.slot);
      this.#checkTokens(e.tokens, `${where}.tokens`);
      checkLogprobsCount(e, where);
      this.#checkTokenMask(e, where);
      if (e.tokens.length === 0 && !this.#hasSampled[e.slot]) {
        throw new InvalidArgumentError(where, `slot ${e.slot} has no sampled token to feed (empty tokens)`);
      }
      const fed = Math.max(1, e.tokens.length);
      const lastPos = e.pos + fed - 1 + (e.sampling ? extra : 0);
      if (!Number.isInteger(e.pos) || e.pos < 0 || lastPos >= this.contextLength) {
        throw new InvalidArgumentError(where, `positions ${e.pos}..${lastPos} do not fit the context of ${this.contextLength}`);
      }
      checkPageTable(e.pages, lastPos, this.kvPool.pageSize, this.kvPool.pageCount, where);
      writes.push({ pages: e.pages, first: e.pos, last: lastPos });
      if (e.sampling && this.#forward.sampler.supports && !this.#forward.sampler.supports(e.sampling)) {
        throw new InvalidRequestError(
          "sampling",
          `a penalty window of ${e.sampling.penaltyWindow} tokens exceeds the ${HISTORY_CAP} tokens the device keeps per sequence`,
          "SAMPLER_UNAVAILABLE",
        );
      }
      for (let j = 0; j < fed; j++) {
        const id = e.tokens.length === 0 ? FROM_LAST_SAMPLED : e.tokens[j]!;
        tokens.push({ id, slot: e.slot, pos: e.pos + j, seq: j, last: j === fed - 1, kvRow: this.#kvRow(e.pages, e.pos + j) });
      }
      if (e.sampling) {
        rows.push(tokens.length - 1);
        const logprobs = e.logprobs === undefined ? undefined : Math.min(e.logprobs, this.config.vocabSize);
        samples.push({ entry, slot: e.slot, sampling: e.sampling, sampleIndex: e.sampleIndex, nextPos: e.pos + fed, pages: e.pages, logprobs, tokenMask: e.tokenMask });
      }
    });
    if (tokens.length > this.maxBatchTokens) {
      throw new InvalidArgumentError("batch", `${tokens.length} tokens exceed maxBatchTokens ${this.maxBatchTokens}`);
    }
    checkDisjointWrites(writes, this.kvPool.pageSize);
    batch.forEach((e, i) => this.#uploadPageTable(e.slot, e.pages, writes[i]!.last));
    return { tokens, rows, samples };
  }

  /** Throws InvalidArgumentError naming the entry's tokenMask when its length is not the vocabulary's words. */
  #checkTokenMask(e: BatchEntry, where: string): void {
    const words = tokenMaskWords(this.config.vocabSize);
    if (e.tokenMask === undefined || e.tokenMask.length === words) return;
    throw new InvalidArgumentError(`${where}.tokenMask`, `${e.tokenMask.length} words; a vocabulary of ${this.config.vocabSize} tokens needs ${words}`);
  }

  /** The pool row of position `pos` under page table `pages`. */
  #kvRow(pages: readonly number[], pos: number): number {
    const size = this.kvPool.pageSize;
    return pages[Math.floor(pos / size)]! * size + (pos % size);
  }

  /** Queues the write of `slot`'s page table for positions [0, lastPos], from its first change. */
  #uploadPageTable(slot: number, pages: readonly number[], lastPos: number): void {
    const mirror = this.#pageTables[slot]!;
    const needed = pagesFor(lastPos + 1, this.kvPool.pageSize);
    let first = 0;
    while (first < needed && mirror[first] === pages[first]) first++;
    if (first === needed) return;
    const words = Uint32Array.from(pages.slice(first, needed));
    mirror.set(words, first);
    this.#ctx.allocator.writeBuffer(this.#forward.pageTable, (slot * this.#forward.maxPages + first) * 4, words);
  }

  #recorder(label: string): Recorder {
    const f = this.#forward;
    let n = 0;
    return new Recorder(() => new GpuStep(this.#ctx, f.arena, `${label} ${n++}`, this.#profiler), this.#options.maxSubmitWork ?? defaultSubmitWork(this.#ctx));
  }

  /** Maps `readback`, copies `bytes` of i32 out, unmaps. */
  async #map(readback: GPUBuffer, bytes: number): Promise<Int32Array> {
    await this.#withTimeout(readback.mapAsync(GPUMapMode.READ, 0, bytes), "reading sampled ids");
    try {
      this.#ctx.check();
      return new Int32Array(readback.getMappedRange(0, bytes).slice(0));
    } finally {
      readback.unmap();
    }
  }

  async #withTimeout<T>(work: Promise<T>, what: string): Promise<T> {
    const ms = this.#options.timeoutMs ?? 60_000;
    try {
      return await this.#ctx.whileProgressing(work, ms, () =>
        this.#ctx.failure ?? new GpuError("GPU_TIMEOUT", `${what}: the GPU finished no work for ${ms} ms`));
    } catch (error) {
      // A lost device shows first as failed work; give its `lost` promise one turn of the
      // event loop to resolve, so the error names the loss rather than its symptom.
      await Promise.race([this.#ctx.device.lost, yieldToEventLoop()]);
      throw this.#ctx.failure ?? error;
    }
  }

  #checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.maxSlots) {
      throw new InvalidArgumentError("slot", `slot ${slot} is outside [0, ${this.maxSlots})`);
    }
  }

  #checkTokens(tokens: readonly number[], where: string): void {
    for (const t of tokens) {
      if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) {
        throw new InvalidArgumentError(where, `token id ${t} is outside the vocabulary [0, ${this.config.vocabSize})`);
      }
    }
  }

  #notifyFailure(): void {
    // Our own dispose destroys the device: not a failure.
    if (this.#disposed || this.#reportedFailure) return;
    const error = this.#ctx.failure;
    if (!error) return;
    this.#reportedFailure = true;
    for (const listener of this.#listeners) listener(error);
  }
}

/** Attention multiply-adds of a sub-step: each token reads (pos + 1) keys and values. */
function attentionWork(tokens: readonly TokenRecord[], qDim2: number): number {
  return tokens.reduce((sum, t) => sum + (t.pos + 1) * qDim2, 0);
}

/** The most positions any of `tokens` attends over (its pos + 1). */
function maxKeys(tokens: readonly TokenRecord[]): number {
  return tokens.reduce((most, t) => Math.max(most, t.pos + 1), 0);
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(name, `expected a positive whole number, got ${value}`);
  return value;
}

/** What {@link planKvPool} chose. */
export interface KvPoolPlan {
  readonly type: KvCacheType;
  readonly pageSize: number;
  readonly pageCount: number;
}

/** What sizes the pool: the runner's options. */
export interface KvPoolRequest {
  readonly type: KvCacheType | "auto";
  readonly maxSlots: number;
  readonly contextLength: number;
  readonly pageSize: number;
  /** The budget; absent: {@link DEFAULT_KV_BUDGET_BYTES}, within what the device's bindings hold. */
  readonly kvCacheBytes?: number;
}

/**
 * The KV pool's element type and page count. With `kvCacheBytes`, as many pages as it
 * buys. Without, maxSlots full contexts, capped at {@link DEFAULT_KV_BUDGET_BYTES} and at
 * what the device's storage bindings hold, but never below one full context (else
 * LIMIT_TOO_LOW naming --context). `auto` picks f32 when an f32 pool of at most 1 GiB holds
 * as many of the wanted pages as an f16 one.
 */
export function planKvPool(ctx: GpuContext, c: ModelConfig, r: KvPoolRequest): KvPoolPlan {
  const perSequence = pagesFor(r.contextLength, r.pageSize);
  const wanted = r.maxSlots * perSequence;
  const pageBytesAll = (type: KvCacheType) => 2 * c.nLayers * kvPageBytes(c, r.pageSize, type);
  const devicePages = (type: KvCacheType) => kvPagesPerBinding(ctx, c, r.pageSize, type) * Math.max(0, maxKvBindings(ctx, c));
  const pages = (type: KvCacheType): number => {
    if (r.kvCacheBytes !== undefined) return Math.floor(r.kvCacheBytes / pageBytesAll(type));
    const budget = Math.max(perSequence, Math.floor(DEFAULT_KV_BUDGET_BYTES / pageBytesAll(type)));
    return Math.min(wanted, budget, devicePages(type));
  };
  const f32Fits = pages("f32") >= Math.min(wanted, pages("f16")) && pages("f32") * pageBytesAll("f32") <= AUTO_F16_ABOVE_BYTES;
  const type: KvCacheType = r.type !== "auto" ? r.type : f32Fits ? "f32" : "f16";
  const pageCount = pages(type);
  if (r.kvCacheBytes !== undefined && pageCount < 1) {
    throw new InvalidArgumentError("kvCacheBytes", `${r.kvCacheBytes} bytes hold no KV page of ${pageBytesAll(type)} bytes (--kv-budget)`);
  }
  if (r.kvCacheBytes === undefined && pageCount < perSequence) {
    const bytes = perSequence * pageBytesAll(type);
    throw new GpuError(
      "LIMIT_TOO_LOW",
      `one sequence of ${r.contextLength} positions needs a KV pool of ${bytes} bytes, more than this device's storage bindings hold (${pageCount * pageBytesAll(type)}); lower contextLength (--context)`,
      { label: "KV pool", limit: "maxStorageBufferBindingSize", needed: bytes, available: pageCount * pageBytesAll(type) },
    );
  }
  return { type, pageSize: r.pageSize, pageCount };
}
