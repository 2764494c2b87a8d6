/**
 * The engine: one way to create, use and dispose a model, for every door (library, CLI,
 * server, browser worker).
 *
 * `createEngine` returns at once and loads in the background; requests made meanwhile
 * wait in the queue and are served once the model is there. The inference loop is one
 * async task governed by an AbortController. `dispose()` settles every request with
 * EngineDisposedError, aborts the loop, awaits its exit, then releases every GPU buffer
 * (and the device, when the engine made it). Nothing waits on a timer.
 */
import { type GGUFFile, openGGUF } from "../gguf/reader.ts";
import type { ModelConfig } from "../model/config.ts";
import { chatTemplateCaps, chatTemplateOf, renderChat, type Tokenizer, tokenizerFromMetadata } from "../tokenizer/index.ts";
import { GENERIC_TOOL_INSTRUCTION, type ToolSetup, toolSetupOf, withForcedToolCall } from "./tool-calls.ts";
import { loadRunner, type ModelSource, type RunnerChoice } from "./backends.ts";
import { EngineDisposedError, EngineFailedError, InvalidRequestError, RequestAbortedError } from "./errors.ts";
import { samplingParamsOf, stopStringsOf, validateGenerateOptions } from "./options.ts";
import { Request, type RequestInput, type ResolvedRequest } from "./request.ts";
import { KvPages, type PageCopy, type PageTable } from "./kv-pages.ts";
import { ChoiceGroup } from "./choices.ts";
import { checkDimensions, type EmbeddingResult, type EmbedInput, embedInputsOf, type EmbedOptions, finishEmbedding, poolingOf } from "./embed.ts";
import type { BatchEntry, KvPool, ModelRunner, StepIds, StepProfile } from "../model/runner.ts";
import { GpuError } from "../errors.ts";
import { GREEDY } from "../sampling/sampler.ts";
import { grammarVocabulary, jsonSchemaToGbnf, TokenGrammar } from "../grammar/index.ts";
import type {
  ChatMessage,
  EngineState,
  GenerateInput,
  GenerateOptions,
  GenerationStream,
  LoadProgress,
  TokenPrompt,
} from "./types.ts";

/**
 * Decode steps per readback when nobody says. Measured on the embedded model, Deno's
 * WebGPU on lavapipe (`deno task cli bench --lookahead N`, 64 + 64 tokens, median of 3):
 * 27 tok/s at 1, 37 at 4, 45 at 8, 57 at 16. 8 takes most of the gain while a stop
 * found inside a window wastes at most 7 steps.
 */
export const DEFAULT_LOOKAHEAD = 8;

/** How an engine is built. Every field is optional. */
export interface EngineOptions extends RunnerChoice {
  /** Sequences decoded together (continuous batching); each holds a KV slot. Default 4. */
  readonly maxSequences?: number;
  /** Most tokens one step feeds, prompt chunks and decode tokens together. Default 256. */
  readonly maxBatchTokens?: number;
  /**
   * Most positions one sequence may hold (prompt and generated tokens); default the
   * model's trained context capped at 8192, at most the trained context. CLI: `--context`.
   */
  readonly contextLength?: number;
  /**
   * Bytes of the KV pool that every sequence's pages come from; default chosen from the
   * device's limits. CLI: `--kv-budget` (MiB).
   */
  readonly kvCacheBytes?: number;
  /**
   * Keep finished sequences' full KV pages and reuse them for requests that start with
   * the same tokens (default true). Off only to measure what reuse saves.
   */
  readonly prefixCache?: boolean;
  /**
   * Decode steps submitted before one readback, unless a request asks otherwise. Default
   * {@link DEFAULT_LOOKAHEAD}.
   */
  readonly lookahead?: number;
  /** Load progress: bytes read and tensors uploaded. */
  readonly onProgress?: (progress: LoadProgress) => void;
  /**
   * For URL sources: how long a read waits for the next byte before the load fails with
   * `SourceError` `READ_TIMEOUT` naming the URL (ms; default 30 000, `Infinity` for ever).
   */
  readonly readTimeoutMs?: number;
}

/** What {@link Engine.profile} measured. */
export interface EngineProfile {
  /** The runner's description (backend, provider, adapter). */
  readonly runner: string;
  /** The prompt step, each kernel timed. */
  readonly prefill: StepProfile;
  /** One decode step, each kernel timed. */
  readonly decode: StepProfile;
  /** Wall time per decoded token of ordinary (untimed) submissions. */
  readonly decodeWallUsPerToken: number;
  /** Decode steps per submission in that measurement. */
  readonly lookahead: number;
}

/** What the engine is doing now, for metrics and tests. */
export interface EngineStats {
  readonly state: EngineState;
  readonly queued: number;
  readonly active: number;
  readonly freeSlots: number;
  /** Whether the inference loop task is running. */
  readonly loopRunning: boolean;
}

/** The KV pool's use and what the prefix cache saved, for tests, `bench` and metrics. */
export interface KvStats {
  /** KV pages held by running sequences, of `kvPool.pageCount`. */
  readonly usedPages: number;
  /** KV pages in the prefix cache (held or not). */
  readonly cachedPages: number;
  /** Prompt tokens computed (fed to the model) since the engine was made, recomputation included. */
  readonly prefilledTokens: number;
  /** Prompt tokens reused from the prefix cache since the engine was made. */
  readonly cachedTokens: number;
  /** Times a running request gave back its pages for others and was recomputed later. */
  readonly preemptions: number;
}

/** Wakes the loop when work arrives; a wake-up before the wait is not lost. */
class Wakeup {
  #pending = false;
  #resolve: (() => void) | undefined;

  notify(): void {
    this.#pending = true;
    this.#resolve?.();
    this.#resolve = undefined;
  }

  wait(): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#resolve = () => {
        this.#pending = false;
        resolve();
      };
    });
  }
}

/** A slot and fresh KV pages lent to one embedding (see `Engine.embed`). */
interface SlotLease {
  readonly slot: number;
  readonly table: PageTable;
}

/** An embedding waiting for a slot and `positions` positions of pages. */
interface LeaseWaiter {
  readonly positions: number;
  readonly grant: (lease: SlotLease) => void;
  readonly refuse: (error: unknown) => void;
}

/** One scheduled step: the entries, and the request behind each. */
interface ScheduledStep {
  readonly entries: BatchEntry[];
  readonly requests: Request[];
  readonly extraSteps: number;
}

export class Engine implements AsyncDisposable {
  readonly #options: EngineOptions;
  readonly #controller = new AbortController();
  readonly #wakeup = new Wakeup();
  readonly #queue: Request[] = [];
  readonly #active: Request[] = [];
  #freeSlots: number[] = [];
  #state: EngineState = "loading";
  #failure: unknown;
  #file: GGUFFile | undefined;
  #runner: ModelRunner | undefined;
  #tokenizer: Tokenizer | undefined;
  /** Compiled grammars by GBNF text: requests with the same schema share one automaton and mask cache. */
  readonly #grammars = new Map<string, TokenGrammar>();
  /** While constrained and unconstrained requests decode together, whose turn it is (see #schedule). */
  #constrainedTurn = false;
  #loopRunning = true;
  readonly #loop: Promise<void>;
  readonly #ready: Promise<void>;
  #disposing: Promise<void> | undefined;
  /** `logits()` calls in progress: they borrow slot 0, so no request is admitted meanwhile. */
  #borrowed = 0;
  #pages: KvPages | undefined;
  /** Embeddings waiting for a slot and pages, oldest first; the loop grants them before admitting requests. */
  readonly #leaseWaiters: LeaseWaiter[] = [];
  /** Slots lent to embeddings now. */
  #leases = 0;
  readonly #counters = { prefilledTokens: 0, cachedTokens: 0, preemptions: 0 };

  /** Use {@link createEngine}. */
  constructor(source: ModelSource, options: EngineOptions = {}) {
    this.#options = options;
    let markReady!: () => void;
    let markFailed!: (e: unknown) => void;
    this.#ready = new Promise((resolve, reject) => {
      markReady = resolve;
      markFailed = reject;
    });
    this.#ready.catch(() => {});
    this.#loop = this.#run(source, markReady, markFailed).finally(() => (this.#loopRunning = false));
  }

  /** Resolves once the model is loaded; rejects if loading failed or the engine was disposed first. */
  get ready(): Promise<void> {
    return this.#ready;
  }

  get state(): EngineState {
    return this.#state;
  }

  /** The model's description (after `ready`). */
  get config(): ModelConfig {
    return this.#loaded().config;
  }

  /** The model's tokenizer (after `ready`). */
  get tokenizer(): Tokenizer {
    if (!this.#tokenizer) throw this.#notReadyError();
    return this.#tokenizer;
  }

  /** Backend, provider and adapter of the loaded model (after `ready`). */
  get description(): string {
    return this.#loaded().description;
  }

  /** Sequences that can run at once, and the context each has (after `ready`). */
  get limits(): { maxSequences: number; contextLength: number; maxBatchTokens: number } {
    const r = this.#loaded();
    return { maxSequences: r.maxSlots, contextLength: r.contextLength, maxBatchTokens: r.maxBatchTokens };
  }

  /** The KV pool shared by every sequence: page size, page count, bytes (after `ready`). */
  get kvPool(): KvPool {
    const pool = this.#loaded().kvPool;
    return { pageSize: pool.pageSize, pageCount: pool.pageCount, bytes: pool.bytes };
  }

  /** GPU buffers and bytes the engine holds (its own accounting); zeros once disposed. */
  memory(): { liveBuffers: number; liveBytes: number } {
    const m = this.#runner?.memory();
    return { liveBuffers: m?.liveBuffers ?? 0, liveBytes: m?.liveBytes ?? 0 };
  }

  /** The most GPU bytes the engine's buffers held at once (0 on the CPU backend). */
  peakMemoryBytes(): number {
    return this.#runner?.memory().peakBytes ?? 0;
  }

  stats(): EngineStats {
    return {
      state: this.#state,
      queued: this.#queue.length,
      active: this.#active.length,
      freeSlots: this.#freeSlots.length,
      loopRunning: this.#loopRunning,
    };
  }

  /** The KV pool's use now, and counters since the engine was made. */
  kvStats(): KvStats {
    return {
      usedPages: this.#pages?.usedPages ?? 0,
      cachedPages: this.#pages?.cachedPages ?? 0,
      ...this.#counters,
    };
  }

  /**
   * Generates from a prompt (plain text, tokenized with the model's BOS rules), from chat
   * messages (rendered with the model's chat template), or from `{ tokens }` (fed as given). Iterate the result for chunks, or
   * await its `result`. Errors (invalid options, prompt too long, abort, disposal) reject
   * the stream and `result` with a typed error.
   */
  generate(input: GenerateInput, options: GenerateOptions = {}): GenerationStream {
    try {
      validateGenerateOptions(options);
      if (typeof input !== "string" && !Array.isArray(input) && !Array.isArray((input as TokenPrompt).tokens)) {
        throw new InvalidRequestError("input", "must be a string, an array of chat messages, or { tokens }");
      }
    } catch (e) {
      const refused = new Request(input, options);
      refused.fail(e);
      return refused;
    }
    const n = options.n ?? 1;
    const group = n > 1 ? new ChoiceGroup(input, options, n) : undefined;
    const requests = group ? group.choices : [new Request(input, options)];
    if (this.#state === "disposed") for (const r of requests) r.fail(new EngineDisposedError());
    else if (this.#state === "failed") for (const r of requests) r.fail(this.#failedError());
    else if (options.signal?.aborted) for (const r of requests) r.failAborted();
    else for (const r of requests) this.#enqueue(r);
    return group ?? requests[0]!;
  }

  /**
   * Embeds texts (tokenized with the model's BOS/EOS rules) or token-id lists: the final
   * hidden state (after the output norm, before the LM head) pooled as the file's
   * `<arch>.pooling_type` says (mean, CLS or last; last when unspecified), truncated to
   * `dimensions` and L2-normalised unless `normalize: false`. Each input runs on a slot
   * and KV pages lent by the loop beside running generations (which it leaves unchanged)
   * and given back after. Errors: InvalidRequestError naming `input[i]` (empty, bad token
   * id, longer than the context: `PROMPT_TOO_LONG`, raise `--context`), `dimensions`,
   * or the pooling key; RequestAbortedError on `signal`.
   */
  async embed(input: EmbedInput, options: EmbedOptions = {}): Promise<EmbeddingResult> {
    const items = embedInputsOf(input);
    await this.#ready;
    const runner = this.#loaded();
    if (!runner.embed) throw new InvalidRequestError("input", `${runner.description}: this runner computes no embeddings`, "EMBEDDINGS_UNSUPPORTED");
    const pooling = poolingOf(this.#file!.metadata);
    const dimensions = checkDimensions(options.dimensions, runner.config.nEmbd);
    const tokenLists = items.map(({ param, value }) => this.#embeddingTokens(param, value));
    const embeddings: Float32Array[] = [];
    for (const tokens of tokenLists) {
      options.signal?.throwIfAborted();
      const lease = await this.#lease(tokens.length, options.signal);
      try {
        const pooled = await runner.embed(lease.slot, tokens, lease.table.pages, pooling);
        embeddings.push(finishEmbedding(pooled, dimensions, options.normalize ?? true));
      } finally {
        this.#returnLease(lease);
      }
    }
    return { embeddings, promptTokens: tokenLists.reduce((n, t) => n + t.length, 0), pooling };
  }

  /** The ids of one embedding input, checked against the vocabulary, the context and the pool. */
  #embeddingTokens(param: string, value: string | readonly number[]): number[] {
    const runner = this.#runner!;
    const tokens = typeof value === "string" ? this.#tokenizer!.encode(value) : [...value];
    if (tokens.length === 0) throw new InvalidRequestError(param, "gives no tokens");
    const bad = tokens.findIndex((t) => t >= runner.config.vocabSize);
    if (bad >= 0) throw new InvalidRequestError(`${param}[${bad}]`, `${tokens[bad]} is not a token id of this model (0 ≤ id < ${runner.config.vocabSize})`);
    if (tokens.length > runner.contextLength) {
      throw new InvalidRequestError(
        param,
        `${tokens.length} tokens exceed the context of ${runner.contextLength} (raise --context / contextLength, up to the model's ${runner.config.contextLength})`,
        "PROMPT_TOO_LONG",
      );
    }
    if (this.#pages!.pagesFor(tokens.length) > this.#pages!.pageCount) {
      throw new InvalidRequestError(param, this.#poolTooSmall(tokens.length), "KV_POOL_TOO_SMALL");
    }
    return tokens;
  }

  /** Waits until the loop lends a free slot with fresh pages for `positions` positions. */
  #lease(positions: number, signal: AbortSignal | undefined): Promise<SlotLease> {
    return new Promise<SlotLease>((resolve, reject) => {
      const onAbort = () => {
        const i = this.#leaseWaiters.indexOf(waiter);
        if (i >= 0) this.#leaseWaiters.splice(i, 1);
        reject(new RequestAbortedError(signal?.reason));
      };
      const waiter: LeaseWaiter = {
        positions,
        grant: (lease) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(lease);
        },
        refuse: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      if (this.#state !== "ready") return reject(this.#notReadyError());
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#leaseWaiters.push(waiter);
      this.#wakeup.notify();
    });
  }

  /** Lends slots and pages to waiting embeddings, oldest first, while they fit. */
  #grantLeases(): void {
    if (this.#borrowed > 0) return;
    const pages = this.#pages!;
    while (this.#leaseWaiters.length > 0 && this.#freeSlots.length > 0) {
      const waiter = this.#leaseWaiters[0]!;
      const table = pages.match([]).table;
      if (!pages.ensure(table, waiter.positions)) {
        pages.release(table);
        return;
      }
      this.#leaseWaiters.shift();
      this.#leases++;
      waiter.grant({ slot: this.#freeSlots.pop()!, table });
    }
  }

  #returnLease(lease: SlotLease): void {
    this.#leases--;
    if (this.#state === "disposed") return;
    // The slot's penalty history holds the embedded tokens: whoever takes it next resets it.
    this.#pages!.release(lease.table);
    this.#freeSlots.push(lease.slot);
    this.#wakeup.notify();
  }

  /**
   * Full-vocabulary logits at every position of `ids` (fed as given, BOS included if
   * wanted), on slot 0 while no request runs. For perplexity and checks.
   */
  async logits(ids: readonly number[]): Promise<Float32Array[]> {
    return await this.#withSlotZero("logits", ids.length, (runner, pages) => runner.logits(0, 0, ids, pages));
  }

  /**
   * For `bench --profile`: feeds `prompt` and then decodes on slot 0 while no request runs,
   * timing each kernel of the prompt step and of one decode step on the GPU (timestamp
   * queries), then the wall time per token of `rounds` ordinary submissions of `lookahead`
   * decode steps each. Needs a runner with `profileStep` (WebGPU with timestamp queries).
   */
  async profile(prompt: readonly number[], options: { lookahead: number; rounds?: number }): Promise<EngineProfile> {
    const lookahead = Math.max(1, Math.floor(options.lookahead));
    const rounds = Math.max(1, Math.floor(options.rounds ?? 3));
    // The warm-up decodes, the profiled one and the timed rounds, all on one page table.
    const positions = prompt.length + (rounds + 1) * lookahead + 1;
    return await this.#withSlotZero("prompt", positions, async (runner, pages) => {
      if (!runner.profileStep) {
        throw new GpuError("GPU_UNSUPPORTED", `${runner.description}: this runner cannot time its kernels (no timestamp queries)`);
      }
      const entry = (pos: number, tokens: readonly number[], sampleIndex: number): BatchEntry => ({
        slot: 0, pos, tokens, sampling: GREEDY, sampleIndex, pages,
      });
      // Warm-up (pipelines first used, caches), then the profiled prompt.
      await runner.step([entry(0, prompt, 0)], 0);
      runner.resetSlot(0);
      const prefill = await runner.profileStep([entry(0, prompt, 0)], 0);
      let pos = prompt.length;
      const decodeSteps = async (extra: number) => {
        await runner.step([entry(pos, [], pos - prompt.length + 1)], extra);
        pos += 1 + extra;
      };
      await decodeSteps(lookahead - 1);
      const decode = await runner.profileStep([entry(pos, [], pos - prompt.length + 1)], 0);
      pos += 1;
      const start = performance.now();
      for (let i = 0; i < rounds; i++) await decodeSteps(lookahead - 1);
      const decodeWallUsPerToken = ((performance.now() - start) * 1000) / (rounds * lookahead);
      return { runner: runner.description, prefill, decode, decodeWallUsPerToken, lookahead };
    });
  }

  /**
   * Runs `work` on slot 0 over a fresh page table of `positions` positions while no
   * request runs (requests queued meanwhile wait for it), then gives the pages back.
   */
  async #withSlotZero<T>(
    param: string,
    positions: number,
    work: (runner: ModelRunner, pages: readonly number[]) => Promise<T>,
  ): Promise<T> {
    await this.#ready;
    const runner = this.#loaded();
    if (this.#active.length > 0 || this.#queue.length > 0 || this.#leases > 0 || this.#leaseWaiters.length > 0) {
      throw new InvalidRequestError(param, "the engine is busy with requests", "ENGINE_BUSY");
    }
    if (positions > runner.contextLength) {
      throw new InvalidRequestError(
        param,
        `${positions} positions exceed the context of ${runner.contextLength} (raise --context / contextLength)`,
        "PROMPT_TOO_LONG",
      );
    }
    const pages = this.#pages!;
    // Nothing runs: every page is free or only cached, so this fails only for a pool too small.
    const table = pages.match([]).table;
    if (!pages.ensure(table, positions)) {
      pages.release(table);
      throw new InvalidRequestError(param, this.#poolTooSmall(positions), "KV_POOL_TOO_SMALL");
    }
    this.#borrowed++;
    try {
      runner.resetSlot(0);
      return await work(runner, table.pages);
    } finally {
      pages.release(table);
      this.#borrowed--;
      this.#wakeup.notify();
    }
  }

  /** Disposes the engine: see the file's comment. Safe to call more than once. */
  dispose(): Promise<void> {
    this.#disposing ??= this.#dispose();
    return this.#disposing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  async #dispose(): Promise<void> {
    const wasFailed = this.#state === "failed";
    this.#state = "disposed";
    this.#failAll(new EngineDisposedError());
    this.#controller.abort();
    this.#wakeup.notify();
    await this.#loop;
    // The disposed runner is kept: its accounting is what `memory()` reports from now on.
    try {
      await this.#runner?.dispose();
    } finally {
      // Even when the device's release fails (DEVICE_DESTROY_TIMEOUT), the file is closed.
      await this.#file?.close();
      this.#file = undefined;
      if (wasFailed) this.#failure = undefined;
    }
  }

  #enqueue(request: Request): void {
    const signal = request.options.signal;
    if (signal) {
      const onAbort = () => {
        request.failAborted();
        this.#wakeup.notify();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      request.result.then(
        () => signal.removeEventListener("abort", onAbort),
        () => signal.removeEventListener("abort", onAbort),
      );
    }
    this.#queue.push(request);
    this.#wakeup.notify();
  }

  async #run(source: ModelSource, markReady: () => void, markFailed: (e: unknown) => void): Promise<void> {
    try {
      await this.#load(source);
    } catch (e) {
      markFailed(this.#state === "disposed" ? new EngineDisposedError() : e);
      if (this.#state !== "disposed") this.#fail(e);
      return;
    }
    if (this.#state === "disposed") {
      markFailed(new EngineDisposedError());
      return;
    }
    this.#state = "ready";
    markReady();
    await this.#serve();
  }

  async #load(source: ModelSource): Promise<void> {
    const signal = this.#controller.signal;
    const o = this.#options;
    this.#file = await openGGUF(source, { signal, fetch: o.fetch, readTimeoutMs: o.readTimeoutMs });
    const tensorsTotal = this.#file.tensors.length;
    const bytesTotal = this.#file.fileSize;
    o.onProgress?.({ phase: "open", bytesLoaded: 0, bytesTotal, tensorsLoaded: 0, tensorsTotal });
    this.#tokenizer = tokenizerFromMetadata(this.#file.metadata);
    signal.throwIfAborted(); // disposed while the header was parsed: no GPU for a dead engine
    const maxSequences = o.maxSequences ?? 4;
    this.#runner = await loadRunner(this.#file, o, {
      maxSlots: maxSequences,
      contextLength: o.contextLength,
      kvCacheBytes: o.kvCacheBytes,
      maxBatchTokens: Math.max(o.maxBatchTokens ?? 256, maxSequences),
      onProgress: o.onProgress,
      signal,
    });
    this.#runner.onFailure?.((error) => this.#fail(error));
    o.onProgress?.({ phase: "ready", bytesLoaded: bytesTotal, bytesTotal, tensorsLoaded: tensorsTotal, tensorsTotal });
    this.#freeSlots = Array.from({ length: this.#runner.maxSlots }, (_, i) => this.#runner!.maxSlots - 1 - i);
    this.#pages = new KvPages(this.#runner.kvPool.pageCount, this.#runner.kvPool.pageSize);
  }

  /** The loop: admit, schedule, run one step, deliver its ids; sleep only on an empty queue. */
  async #serve(): Promise<void> {
    const runner = this.#runner!;
    while (!this.#controller.signal.aborted && this.#state === "ready") {
      this.#releaseFinished();
      this.#grantLeases();
      this.#admit();
      const step = this.#schedule();
      if (!step) {
        await this.#wakeup.wait();
        continue;
      }
      let ids: StepIds;
      try {
        ids = await runner.step(step.entries, step.extraSteps);
      } catch (e) {
        this.#fail(e);
        return;
      }
      if (this.#controller.signal.aborted) return;
      this.#deliver(step, ids);
      for (const r of step.requests) this.#commitPages(r);
    }
  }

  /** Frees the slots of finished requests; their full pages stay in the prefix cache. */
  #releaseFinished(): void {
    for (let i = this.#active.length - 1; i >= 0; i--) {
      const r = this.#active[i]!;
      if (!r.done) continue;
      this.#active.splice(i, 1);
      this.#releasePages(r);
      this.#freeSlots.push(r.slot);
    }
    for (let i = this.#queue.length - 1; i >= 0; i--) if (this.#queue[i]!.done) this.#queue.splice(i, 1);
  }

  /** Registers the request's newly filled pages in the prefix cache (when it is on). */
  #commitPages(r: Request): void {
    const table = r.table;
    if (!table || this.#options.prefixCache === false) return;
    const pageSize = this.#pages!.pageSize;
    // Only when a page boundary was crossed: building the token list costs O(length).
    if (Math.floor(r.pos / pageSize) <= table.blockIds.length) return;
    this.#pages!.commit(table, r.sequenceIds, r.pos);
  }

  #releasePages(r: Request): void {
    if (!r.table) return;
    this.#commitPages(r);
    this.#pages!.release(r.table);
    r.table = undefined;
  }

  /**
   * Starts queued requests, oldest first, while a slot is free and the pool has the pages
   * for the prompt (less what the prefix cache holds) and its first decode steps. A request
   * that does not fit waits at the head of the queue (so later ones cannot starve it) until
   * running ones finish or give their pages back.
   */
  #admit(): void {
    if (this.#borrowed > 0) return;
    while (this.#queue.length > 0 && this.#freeSlots.length > 0) {
      const request = this.#queue[0]!;
      if (request.done) {
        this.#queue.shift();
        continue;
      }
      if (!request.prepared) {
        try {
          request.prepare(this.#resolve(request), this.#tokenizer!);
        } catch (e) {
          this.#queue.shift();
          request.fail(e);
          continue;
        }
      }
      if (!this.#start(request)) return;
      this.#queue.shift();
    }
  }

  /** Gives `request` a slot and its pages; false (nothing taken) when the pool cannot yet. */
  #start(request: Request): boolean {
    const pages = this.#pages!;
    const feedIds = request.sequenceIds;
    const parent = request.parent;
    // A later choice waits for choice 0 to have written the prompt, then forks its pages.
    if (parent && request.preemptions === 0 && !parent.done && !this.#wrotePrompt(parent)) return false;
    const fork = parent?.table && request.preemptions === 0 ? this.#forkPrompt(parent) : undefined;
    const useCache = this.#options.prefixCache !== false;
    const { table, cachedTokens } = fork ?? (useCache ? pages.match(feedIds) : pages.match([]));
    const reserve = Math.min(feedIds.length + request.settings.lookahead, this.#maxPositions);
    if (!pages.ensure(table, reserve)) {
      pages.release(table);
      return false;
    }
    if (fork?.copy) this.#runner!.copyPages([fork.copy]);
    const slot = this.#freeSlots.pop()!;
    this.#runner!.resetSlot(slot, feedIds.slice(0, cachedTokens));
    if (request.preemptions === 0) this.#counters.cachedTokens += cachedTokens;
    request.admit(slot, table, feedIds, cachedTokens);
    this.#active.push(request);
    return true;
  }

  /** Whether a running choice 0 has its prompt's keys and values (all but the last token) in its pages. */
  #wrotePrompt(parent: Request): boolean {
    return parent.table !== undefined && parent.pos >= parent.settings.promptIds.length - 1;
  }

  /**
   * A table sharing choice 0's prompt pages, all but the last prompt token (each choice
   * feeds that one itself, to sample its first token from its own stream). Undefined when
   * no page is left for the copy of the partial page.
   */
  #forkPrompt(parent: Request): { table: PageTable; cachedTokens: number; copy?: PageCopy } | undefined {
    const shared = parent.settings.promptIds.length - 1;
    const forked = this.#pages!.fork(parent.table!, shared);
    return forked && { table: forked.table, cachedTokens: shared, copy: forked.copy };
  }

  /**
   * The most positions a sequence can hold: its context, or the whole pool when the pool
   * is smaller (a `kvCacheBytes` below one full context).
   */
  get #maxPositions(): number {
    const pages = this.#pages!;
    return Math.min(this.#runner!.contextLength, pages.pageCount * pages.pageSize);
  }

  #poolTooSmall(positions: number): string {
    const pool = this.#runner!.kvPool;
    return `${positions} positions need ${Math.ceil(positions / pool.pageSize)} KV pages of ${pool.pageSize}, ` +
      `the pool holds ${pool.pageCount} (${(pool.bytes / 2 ** 20).toFixed(1)} MiB): ` +
      `raise --kv-budget / kvCacheBytes, or shorten the prompt`;
  }

  /** Tokenizes a request's input and fills in its settings. */
  #resolve(request: Request): ResolvedRequest {
    const runner = this.#runner!;
    const tools = this.#toolSetup(request.input, request.options);
    // A forced call (tool_choice required or named) is a grammar like any other from here on.
    const o = withForcedToolCall(request.options, tools);
    const promptIds = this.#tokenize(request.input, o, tools);
    if (promptIds.length === 0) throw new InvalidRequestError("prompt", "the prompt is empty");
    if (promptIds.length >= runner.contextLength) {
      throw new InvalidRequestError(
        "prompt",
        `${promptIds.length} tokens leave no room to generate in a context of ${runner.contextLength} ` +
          `(raise --context / contextLength, up to the model's ${runner.config.contextLength})`,
        "PROMPT_TOO_LONG",
      );
    }
    // The prompt and one generated token must fit in the pool with nothing else running.
    if (this.#pages!.pagesFor(promptIds.length + 1) > this.#pages!.pageCount) {
      throw new InvalidRequestError("prompt", this.#poolTooSmall(promptIds.length + 1), "KV_POOL_TOO_SMALL");
    }
    return {
      promptIds,
      sampling: samplingParamsOf(o),
      maxTokens: o.maxTokens ?? 256,
      stop: stopStringsOf(o),
      ignoreEos: o.ignoreEos ?? false,
      lookahead: o.lookahead ?? this.#options.lookahead ?? DEFAULT_LOOKAHEAD,
      logprobs: o.logprobs ? o.topLogprobs ?? 0 : undefined,
      toolFormat: tools?.format,
      grammar: this.#grammarOf(o),
    };
  }

  /**
   * The request's grammar compiled for this model's vocabulary (cached by its text), or
   * undefined when it has none. Throws GrammarError / UnsupportedSchemaError for a bad one.
   */
  #grammarOf(o: GenerateOptions): TokenGrammar | undefined {
    if (o.grammar === undefined && o.jsonSchema === undefined) return undefined;
    if (o.grammar !== undefined && o.jsonSchema !== undefined) {
      throw new InvalidRequestError("grammar", "give either grammar or jsonSchema, not both");
    }
    const runner = this.#runner!;
    if (!runner.masksTokens) {
      // Both built-in runners mask; this guards a custom ModelRunner that does not.
      throw new InvalidRequestError("grammar", `the ${runner.description} runner does not apply token masks (ModelRunner.masksTokens)`, "GRAMMAR_UNSUPPORTED");
    }
    const gbnf = o.grammar ?? jsonSchemaToGbnf(o.jsonSchema!);
    let grammar = this.#grammars.get(gbnf);
    if (!grammar) {
      grammar = TokenGrammar.fromGbnf(gbnf, grammarVocabulary(this.#tokenizer!));
      if (this.#grammars.size >= GRAMMAR_CACHE_SIZE) this.#grammars.delete(this.#grammars.keys().next().value!);
      this.#grammars.set(gbnf, grammar);
    }
    return grammar;
  }

  /** The request's tools and the format the model's template calls them in (undefined: none offered). */
  #toolSetup(input: RequestInput, o: GenerateOptions): ToolSetup | undefined {
    if (o.tools === undefined && o.toolChoice === undefined) return undefined;
    if (!Array.isArray(input)) throw new InvalidRequestError("tools", "need chat messages as input (the chat template shows the tools)");
    const meta = this.#file!.metadata;
    const template = chatTemplateOf(meta) ?? "";
    return toolSetupOf(o, template, template === "" ? false : chatTemplateCaps(meta).supportsTools);
  }

  #tokenize(input: RequestInput, o: GenerateOptions, tools?: ToolSetup): number[] {
    const tokenizer = this.#tokenizer!;
    if (typeof input === "string") return tokenizer.encode(input);
    if (!Array.isArray(input)) return this.#checkedIds((input as TokenPrompt).tokens);
    // llama.cpp's generic format asks for one JSON object, a call or a response, in the system message.
    const messages = tools?.format === "generic" ? withSystemText(input, GENERIC_TOOL_INSTRUCTION) : input;
    const text = renderChat(this.#file!.metadata, messages, {
      addGenerationPrompt: o.addGenerationPrompt ?? true,
      tools: tools?.tools,
    });
    const ids = tokenizer.encode(text);
    // Templates that write the BOS themselves would otherwise get a second one.
    if (ids.length > 1 && tokenizer.bos !== undefined && ids[0] === tokenizer.bos && ids[1] === tokenizer.bos) {
      ids.shift();
    }
    return ids;
  }

  #checkedIds(ids: readonly number[]): number[] {
    const vocab = this.#runner!.config.vocabSize;
    for (const [i, t] of ids.entries()) {
      if (!Number.isInteger(t) || t < 0 || t >= vocab) {
        throw new InvalidRequestError(`tokens[${i}]`, `${t} is not a token id of this model (0 ≤ id < ${vocab})`);
      }
    }
    return [...ids];
  }

  /**
   * Decode tokens first (one each, fed from the device), then prompt chunks within the
   * token budget. Lookahead only when no prompt finishes in this step, so the first
   * token of a new request is read back as soon as it exists.
   */
  #schedule(): ScheduledStep | undefined {
    const runner = this.#runner!;
    const decoding = this.#takingTurns(this.#decodersWithPages());
    const requests: Request[] = [];
    const chunks: (readonly number[])[] = [];
    let budget = runner.maxBatchTokens;
    for (const r of decoding) {
      requests.push(r);
      chunks.push([]);
      budget--;
    }
    let prefilling = false;
    for (const r of this.#active) {
      if (r.phase !== "prefill" || r.done || budget <= 0) continue;
      const n = Math.min(r.feedIds.length - r.fed, budget);
      requests.push(r);
      chunks.push(r.feedIds.slice(r.fed, r.fed + n));
      budget -= n;
      prefilling = true;
    }
    if (requests.length === 0) return undefined;
    // A mask covers one sample: a step with a constrained sample reads its id back at once.
    const masked = requests.some((r, i) => r.constrained && (r.phase === "decode" || r.fed + chunks[i]!.length === r.feedIds.length));
    const extraSteps = prefilling || masked ? 0 : this.#pagesAhead(requests, this.#extraSteps(requests));
    const entries = requests.map((r, i): BatchEntry => {
      const tokens = chunks[i]!;
      const samples = r.phase === "decode" || r.fed + tokens.length === r.feedIds.length;
      const tokenMask = samples ? r.nextTokenMask() : undefined;
      return {
        ...(tokenMask ? { tokenMask } : {}),
        slot: r.slot,
        pos: r.pos,
        tokens,
        sampling: samples ? r.settings.sampling : undefined,
        sampleIndex: r.generated.length,
        pages: [...r.table!.pages],
        ...(samples && r.settings.logprobs !== undefined ? { logprobs: r.settings.logprobs } : {}),
      };
    });
    return { entries, requests, extraSteps };
  }

  /**
   * Constrained requests need each token back before their next mask, so they cannot ride
   * a lookahead window. When both kinds decode, steps alternate: the unconstrained ones at
   * full lookahead, then the constrained ones together for one token. With only one kind,
   * all of them run (unconstrained traffic alone is scheduled exactly as before).
   */
  #takingTurns(decoding: Request[]): Request[] {
    const constrained = decoding.filter((r) => r.constrained);
    if (constrained.length === 0 || constrained.length === decoding.length) return decoding;
    this.#constrainedTurn = !this.#constrainedTurn;
    return this.#constrainedTurn ? constrained : decoding.filter((r) => !r.constrained);
  }

  /**
   * The decoding requests, each with a page for the position it feeds next. When the pool
   * has none left, the most recently started request gives its pages back and goes to the
   * head of the queue, to resume later by recomputing them (vLLM's recompute preemption;
   * most come back from the prefix cache). A request alone in a pool it has filled ends
   * with "length": the pool is its context.
   */
  #decodersWithPages(): Request[] {
    const pages = this.#pages!;
    const ready: Request[] = [];
    for (const r of [...this.#active]) {
      if (r.phase !== "decode" || r.done) continue;
      while (!r.done && r.table && !pages.ensure(r.table, r.pos + 1)) {
        const holders = this.#active.filter((a) => !a.done && a.table !== undefined);
        if (holders.length === 1) r.finish("length");
        else this.#preempt(holders[holders.length - 1]!);
      }
      if (!r.done && r.table) ready.push(r);
    }
    return ready;
  }

  #preempt(r: Request): void {
    this.#releasePages(r);
    this.#active.splice(this.#active.indexOf(r), 1);
    this.#freeSlots.push(r.slot);
    r.preempt();
    this.#counters.preemptions++;
    this.#queue.unshift(r);
  }

  /** Lookahead cut to what every decoding request has pages for (taking more where the pool has them). */
  #pagesAhead(requests: readonly Request[], wanted: number): number {
    const pages = this.#pages!;
    let extra = wanted;
    for (const r of requests) {
      const table = r.table!;
      if (!pages.ensure(table, r.pos + 1 + extra)) extra = table.pages.length * pages.pageSize - r.pos - 1;
    }
    return Math.max(0, extra);
  }

  /** Lookahead for a decode-only step: the smallest asked for, never past a context's end. */
  #extraSteps(requests: readonly Request[]): number {
    const contextLength = this.#maxPositions;
    let extra = Infinity;
    let wanted = 0;
    for (const r of requests) {
      extra = Math.min(extra, r.settings.lookahead - 1, contextLength - 1 - r.pos);
      wanted = Math.max(wanted, r.remaining - 1);
    }
    return Math.max(0, Math.min(extra, wanted));
  }

  #deliver(step: ScheduledStep, ids: StepIds): void {
    const contextLength = this.#maxPositions;
    step.entries.forEach((entry, i) => {
      const r = step.requests[i]!;
      const fed = Math.max(1, entry.tokens.length);
      if (r.phase === "prefill") {
        r.fed += entry.tokens.length;
        this.#counters.prefilledTokens += entry.tokens.length;
      }
      if (!entry.sampling || r.done) {
        r.pos += entry.tokens.length;
        return;
      }
      r.phase = "decode";
      const sampled = ids[i]!;
      r.pos = entry.pos + fed + (sampled.length - 1);
      for (let k = 0; k < sampled.length; k++) {
        // The k-th id would be fed at entry.pos + fed + k: past the context, it is the last.
        if (!r.accept(sampled[k]!, entry.pos + fed + k >= contextLength, ids.logprobs?.[i]?.[k])) break;
      }
    });
  }

  #fail(error: unknown): void {
    if (this.#state === "disposed" || this.#state === "failed") return;
    this.#state = "failed";
    this.#failure = error;
    this.#failAll(this.#failedError());
    this.#wakeup.notify();
  }

  #failAll(error: unknown): void {
    for (const r of [...this.#queue, ...this.#active]) r.fail(error);
    this.#queue.length = 0;
    for (const waiter of this.#leaseWaiters.splice(0)) waiter.refuse(error);
  }

  #failedError(): EngineFailedError {
    const cause = this.#failure;
    const reason = cause instanceof Error ? cause.message : String(cause);
    return new EngineFailedError(reason, { cause });
  }

  #loaded(): ModelRunner {
    if (!this.#runner || this.#state === "disposed") throw this.#notReadyError();
    return this.#runner;
  }

  #notReadyError(): Error {
    if (this.#state === "disposed") return new EngineDisposedError();
    if (this.#state === "failed") return this.#failedError();
    return new InvalidRequestError("engine", "the model is still loading; await engine.ready", "ENGINE_LOADING");
  }
}

/** `text` added to the leading system message (after a blank line), or as one in front (llama.cpp's add_system). */
function withSystemText(messages: readonly ChatMessage[], text: string): ChatMessage[] {
  const [first, ...rest] = messages;
  if (first?.role === "system") return [{ ...first, content: `${first.content}\n\n${text}` }, ...rest];
  return [{ role: "system", content: text }, ...messages];
}

/**
 * Creates an engine for a model: a path or URL (string or `URL`), a `Blob`/`File`, or the
 * file's bytes. Returns at once; `await engine.ready` to wait for the load, or just start
 * generating: requests made before the model is ready are queued and served.
 */
export function createEngine(source: ModelSource, options: EngineOptions = {}): Engine {
  return new Engine(source, options);
}

/** {@link createEngine}, resolved once the model is loaded (rejects, after cleaning up, if it cannot be). */
/** Compiled grammars an engine keeps (each holds its automaton and up to 512 masks). */
const GRAMMAR_CACHE_SIZE = 8;

export async function loadEngine(source: ModelSource, options: EngineOptions = {}): Promise<Engine> {
  const engine = createEngine(source, options);
  try {
    await engine.ready;
  } catch (e) {
    await engine.dispose();
    throw e;
  }
  return engine;
}
