/**
 * A {@link ModelRunner} on the CPU reference forward pass: slow, plainly correct, and the
 * oracle the WebGPU runner is checked against. `--backend cpu` in the CLI runs it.
 *
 * Its KV cache is a paged pool like the GPU runner's ({@link ReferenceKvPool}): every
 * sequence reads and writes it through the page table its entries bring, so page tables
 * scrambled, shared or copied give the GPU and the CPU the same thing to compare.
 */
import type { GGUFFile } from "../gguf/reader.ts";
import { ReferenceKvPool, ReferenceModel } from "./reference.ts";
import { type ModelConfig, modelConfigFromGGUF } from "./config.ts";
import { type BatchEntry, checkLogprobsCount, type KvPool, type ModelRunner, type PageCopy, type Pooling, type RunnerMemory, type SampledLogprobs, type StepIds } from "./runner.ts";
import { logprobsOf, sampleToken } from "../sampling/sampler.ts";
import { yieldToEventLoop } from "../yield.ts";
import { InvalidArgumentError } from "../errors.ts";
import { checkCopies, checkDisjointWrites, checkPageTable, identityPages, pagesFor, resolveContextLength, resolvePageSize } from "./kv-pool.ts";

/** Sizes every runner is created with. */
export interface RunnerOptions {
  /** Sequences that can run at once. */
  readonly maxSlots: number;
  /** Most positions of one sequence; at most the model's context (default: it, capped at 8192). */
  readonly contextLength?: number;
  /** Most tokens one step may feed, over all entries. */
  readonly maxBatchTokens: number;
  /**
   * Bytes of the pool as the GPU would count them in f32 (default: maxSlots full contexts).
   * The CPU pool grows on demand up to the highest page used.
   */
  readonly kvCacheBytes?: number;
  /** Positions per page (default 32). */
  readonly pageSize?: number;
}

interface Slot {
  /** Every token fed to this slot, oldest first: the penalty window reads its tail. */
  history: number[];
  /** The last token sampled for this slot; fed when an entry brings no tokens. */
  lastSampled: number;
}

export class CpuRunner implements ModelRunner {
  readonly config: ModelConfig;
  readonly kvPool: KvPool;
  readonly maxSlots: number;
  readonly contextLength: number;
  readonly maxBatchTokens: number;
  readonly description = "cpu (reference)";
  readonly masksTokens = true;
  readonly #model: ReferenceModel;
  readonly #pool: ReferenceKvPool;
  readonly #slots: Slot[];
  /** Steps and copies run one after another, in call order. */
  #busy: Promise<unknown> = Promise.resolve();

  private constructor(model: ReferenceModel, options: RunnerOptions) {
    const c = model.config;
    this.#model = model;
    this.config = c;
    this.maxSlots = options.maxSlots;
    this.contextLength = resolveContextLength(options.contextLength, c.contextLength);
    this.maxBatchTokens = options.maxBatchTokens;
    const pageSize = resolvePageSize(options.pageSize);
    const pageBytes = 2 * c.nLayers * pageSize * c.nKvHeads * c.headDim * 4;
    const pageCount = options.kvCacheBytes === undefined
      ? options.maxSlots * pagesFor(this.contextLength, pageSize)
      : Math.floor(options.kvCacheBytes / pageBytes);
    if (pageCount < 1) {
      throw new InvalidArgumentError("kvCacheBytes", `${options.kvCacheBytes} bytes hold no page of ${pageBytes} bytes (--kv-budget)`);
    }
    this.#pool = new ReferenceKvPool(c.nLayers, c.nKvHeads * c.headDim, pageSize, pageCount);
    this.kvPool = { pageSize, pageCount, bytes: pageCount * pageBytes };
    this.#slots = Array.from({ length: options.maxSlots }, () => ({ history: [], lastSampled: -1 }));
  }

  /** Dequantizes the model in `file` to f32. */
  static async load(file: GGUFFile, options: RunnerOptions): Promise<CpuRunner> {
    // LongRoPE (phi3) rotates by the context a sequence may hold, as the GPU runner does.
    const contextLength = resolveContextLength(options.contextLength, modelConfigFromGGUF(file).contextLength);
    return new CpuRunner(await ReferenceModel.load(file, { contextLength }), options);
  }

  resetSlot(slot: number, history: readonly number[] = []): void {
    const s = this.#slot(slot);
    s.history = [...history];
    s.lastSampled = -1;
  }

  copyPages(copies: readonly PageCopy[]): void {
    checkCopies(copies, this.kvPool.pageCount);
    const list = copies.map((c) => ({ ...c }));
    this.#exclusive(() => {
      for (const c of list) this.#pool.copyPage(c.from, c.to);
      return Promise.resolve();
    }).catch(() => undefined);
  }

  step(batch: readonly BatchEntry[], extraSteps: number): Promise<StepIds> {
    return this.#exclusive(async () => {
      await yieldToEventLoop();
      this.#check(batch, extraSteps);
      const runs = batch.map((entry) => this.#run(entry, extraSteps));
      const ids = runs.map((r) => r.ids);
      if (!batch.some((e) => e.sampling && e.logprobs !== undefined)) return ids;
      return Object.assign(ids, { logprobs: runs.map((r) => r.logprobs) });
    });
  }

  logits(slot: number, pos: number, tokens: readonly number[], pages?: readonly number[]): Promise<Float32Array[]> {
    return this.#exclusive(() => {
      const s = this.#slot(slot);
      const table = pages ?? identityPages(pos + tokens.length, this.kvPool.pageSize);
      checkPageTable(table, pos + tokens.length - 1, this.kvPool.pageSize, this.kvPool.pageCount, "logits");
      s.history.push(...tokens);
      return Promise.resolve(this.#model.forward(tokens, this.#pool.view(table, pos), { allLogits: true }));
    });
  }

  embed(slot: number, tokens: readonly number[], pages: readonly number[], pooling: Pooling): Promise<Float32Array> {
    return this.#exclusive(() => {
      this.#slot(slot);
      // Causal attention: the first token's state depends on it alone, so CLS feeds only it.
      const fed = pooling === "cls" ? tokens.slice(0, 1) : tokens;
      checkPageTable(pages, fed.length - 1, this.kvPool.pageSize, this.kvPool.pageCount, "embed");
      const states = this.#model.forward(fed, this.#pool.view(pages, 0), { hidden: true, allLogits: pooling === "mean" });
      return Promise.resolve(pooling === "mean" ? meanOf(states) : states[states.length - 1]!);
    });
  }

  memory(): RunnerMemory {
    return { liveBuffers: 0, liveBytes: 0, peakBytes: 0 };
  }

  dispose(): Promise<void> {
    return Promise.resolve();
  }

  #exclusive<T>(body: () => Promise<T>): Promise<T> {
    const run = this.#busy.then(body, body);
    this.#busy = run.catch(() => undefined);
    return run;
  }

  /** Throws before anything runs when an entry's slot, positions or page table is wrong. */
  #check(batch: readonly BatchEntry[], extraSteps: number): void {
    const { pageSize, pageCount } = this.kvPool;
    const writes = batch.map((e, i) => {
      this.#slot(e.slot);
      checkLogprobsCount(e, `batch[${i}]`);
      const last = e.pos + Math.max(1, e.tokens.length) - 1 + (e.sampling ? extraSteps : 0);
      if (last >= this.contextLength) {
        throw new InvalidArgumentError(`batch[${i}]`, `positions ${e.pos}..${last} do not fit the context of ${this.contextLength}`);
      }
      checkPageTable(e.pages, last, pageSize, pageCount, `batch[${i}]`);
      return { pages: e.pages, first: e.pos, last };
    });
    checkDisjointWrites(writes, pageSize);
  }

  /**
   * Feeds one entry and samples (with its lookahead) when it asks to; with `logprobs`,
   * also the log-softmax of each sampled row's raw logits.
   */
  #run(entry: BatchEntry, extraSteps: number): { ids: Int32Array; logprobs?: SampledLogprobs[] } {
    if (!entry.sampling) {
      this.#feed(entry, entry.pos, this.#tokensOf(entry));
      return { ids: new Int32Array(0) };
    }
    const ids = new Int32Array(1 + extraSteps);
    const logprobs: SampledLogprobs[] | undefined = entry.logprobs === undefined ? undefined : [];
    let logits = this.#feed(entry, entry.pos, this.#tokensOf(entry));
    let pos = entry.pos + Math.max(1, entry.tokens.length);
    for (let k = 0; k <= extraSteps; k++) {
      if (k > 0) logits = this.#feed(entry, pos++, [ids[k - 1]!]);
      const s = this.#slot(entry.slot);
      // The mask bounds the first sample only; logprobs stay those of the raw logits (as
      // llama.cpp's n_probs, and the GPU runner's kernels, report them).
      const allowed = k === 0 && entry.tokenMask ? masked(logits, entry.tokenMask) : logits;
      const id = sampleToken(allowed, entry.sampling, s.history, entry.sampleIndex + k);
      ids[k] = id;
      s.lastSampled = id;
      logprobs?.push({ id, ...logprobsOf(logits, id, entry.logprobs!) });
    }
    return { ids, logprobs };
  }

  #tokensOf(entry: BatchEntry): readonly number[] {
    return entry.tokens.length > 0 ? entry.tokens : [this.#slot(entry.slot).lastSampled];
  }

  /** Runs `tokens` at `pos..` of the entry's sequence; returns the logits after the last one. */
  #feed(entry: BatchEntry, pos: number, tokens: readonly number[]): Float32Array {
    const s = this.#slot(entry.slot);
    s.history.push(...tokens);
    return this.#model.forward(tokens, this.#pool.view(entry.pages, pos))[0]!;
  }

  #slot(slot: number): Slot {
    const s = this.#slots[slot];
    if (!s) throw new RangeError(`slot ${slot} is outside [0, ${this.maxSlots})`);
    return s;
  }
}

/** The element-wise mean of equal-length vectors (summed in f64). */
function meanOf(rows: readonly Float32Array[]): Float32Array {
  const sum = new Float64Array(rows[0]!.length);
  for (const row of rows) row.forEach((v, i) => (sum[i] += v));
  return Float32Array.from(sum, (v) => v / rows.length);
}

/** A copy of `logits` with {@link applyTokenMask} applied. */
function masked(logits: Float32Array, mask: Uint32Array): Float32Array {
  const copy = Float32Array.from(logits);
  applyTokenMask(copy, mask);
  return copy;
}

/** Sets the logit of every token whose bit in `mask` is clear to -inf (constrained decoding). */
export function applyTokenMask(logits: Float32Array, mask: Uint32Array): void {
  for (let i = 0; i < logits.length; i++) {
    if (((mask[i >> 5] ?? 0) >>> (i & 31) & 1) === 0) logits[i] = -Infinity;
  }
}
