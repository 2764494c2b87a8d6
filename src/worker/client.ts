/**
 * {@link WorkerEngine}: the engine's API, with the engine running in a Web Worker so the
 * page never freezes while a model loads or generates.
 *
 * ```ts
 * import { WorkerEngine } from "gguf-webgpu";
 * const worker = new Worker(new URL("gguf-webgpu/worker", import.meta.url), { type: "module" });
 * const engine = new WorkerEngine(worker, "https://example.com/model.gguf", { cache: true });
 * for await (const chunk of engine.generate([{ role: "user", content: "Hi" }])) show(chunk.text);
 * await engine.dispose(); // disposes the engine, then terminates the worker
 * ```
 *
 * It mirrors `Engine`: `ready`, `state`, `generate` (an async-iterable stream with
 * `result`), a per-request `AbortSignal`, and an awaited `dispose()`. What differs is what
 * cannot cross a thread: load options hold no GPU objects or `fetch`, facts about the
 * loaded model arrive as one {@link WorkerEngineInfo}, and `stats()` is asynchronous.
 * Errors from the worker are re-created as their own classes (see `errors.ts`).
 */
import { Channel } from "../engine/channel.ts";
import type { EngineStats } from "../engine/engine.ts";
import { EngineDisposedError, EngineFailedError, InvalidRequestError, RequestAbortedError } from "../engine/errors.ts";
import type { ModelSource } from "../engine/backends.ts";
import type {
  EngineState,
  GenerateInput,
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  GenerationStream,
} from "../engine/types.ts";
import type { ModelConfig } from "../model/config.ts";
import { isHttpUrl } from "../gguf/source.ts";
import { reviveError, serializeError } from "./errors.ts";
import type {
  ClientMessage,
  MessageEndpoint,
  WorkerEngineInfo,
  WorkerEngineSettings,
  WorkerLoadProgress,
  WorkerMessage,
  WorkerModelSource,
} from "./protocol.ts";

/** How a worker engine is built: the engine's options that can cross a thread, plus two of its own. */
export interface WorkerEngineOptions extends WorkerEngineSettings {
  /** Load progress: the download of a URL model being cached, then the engine's own phases. */
  readonly onProgress?: (progress: WorkerLoadProgress) => void;
  /**
   * Keep http(s) models in the browser's Origin Private File System, and read them from
   * there on later loads instead of downloading again (default false). See `ModelCache`.
   */
  readonly cache?: boolean;
}

/** One request as the client sees it: chunks as they arrive, then the result or an error. */
class RemoteRequest implements GenerationStream {
  readonly result: Promise<GenerationResult>;
  readonly #channel = new Channel<GenerationChunk>();
  #resolve!: (r: GenerationResult) => void;
  #reject!: (e: unknown) => void;
  #settled = false;
  /** Runs once the request settles (removes the abort listener). */
  onSettled: (() => void) | undefined;

  constructor() {
    this.result = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Callers may only iterate, or only await `result`: neither may be reported unhandled.
    this.result.catch(() => {});
  }

  get settled(): boolean {
    return this.#settled;
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerationChunk> {
    return this.#channel[Symbol.asyncIterator]();
  }

  push(chunk: GenerationChunk): void {
    if (!this.#settled) this.#channel.push(chunk);
  }

  finish(result: GenerationResult): void {
    if (this.#settle()) {
      this.#channel.close();
      this.#resolve(result);
    }
  }

  fail(error: unknown): void {
    if (this.#settle()) {
      this.#channel.fail(error);
      this.#reject(error);
    }
  }

  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.onSettled?.();
    return true;
  }
}

/** A string source as the worker must see it: relative URLs resolved against the page. */
function postableSource(source: ModelSource): WorkerModelSource {
  if (source instanceof URL) return source.href;
  if (typeof source !== "string" || isHttpUrl(source)) return source;
  // In a page there are no local paths: a relative string is a URL relative to the document.
  const base = typeof document === "undefined" ? undefined : document.baseURI;
  return base === undefined ? source : new URL(source, base).href;
}

function asWorker(endpoint: MessageEndpoint): Worker | undefined {
  return typeof Worker !== "undefined" && endpoint instanceof Worker ? endpoint : undefined;
}

export class WorkerEngine implements AsyncDisposable {
  readonly #endpoint: MessageEndpoint;
  /** The endpoint when it is a `Worker`: watched for crashes, terminated after dispose. */
  readonly #worker: Worker | undefined;
  readonly #options: WorkerEngineOptions;
  readonly #requests = new Map<number, RemoteRequest>();
  readonly #stats = new Map<number, (stats: EngineStats) => void>();
  readonly #ready: Promise<void>;
  #markReady!: () => void;
  #markFailed!: (e: unknown) => void;
  #nextId = 1;
  #state: EngineState = "loading";
  #info: WorkerEngineInfo | undefined;
  #failure: Error | undefined;
  #disposing: Promise<void> | undefined;
  /** The worker crashed: it will answer nothing more. */
  #workerGone = false;
  #onDisposed: (() => void) | undefined;
  readonly #onMessage = (event: MessageEvent) => {
    const message: WorkerMessage = event.data;
    this.#handle(message);
  };
  readonly #onWorkerError = (event: Event) => {
    const detail = event instanceof ErrorEvent && event.message ? event.message : "it stopped unexpectedly";
    this.#workerFailed(new EngineFailedError(`the engine's worker failed: ${detail}`));
  };

  /**
   * Starts loading `source` in the worker (or any endpoint served by `serveEngine`).
   * Returns at once; await `ready`, or generate right away (requests wait for the model).
   * A relative URL string is resolved against the page's address.
   */
  constructor(endpoint: MessageEndpoint, source: ModelSource, options: WorkerEngineOptions = {}) {
    this.#endpoint = endpoint;
    this.#worker = asWorker(endpoint);
    this.#options = options;
    this.#ready = new Promise((resolve, reject) => {
      this.#markReady = resolve;
      this.#markFailed = reject;
    });
    this.#ready.catch(() => {});
    endpoint.addEventListener("message", this.#onMessage);
    this.#worker?.addEventListener("error", this.#onWorkerError);
    this.#worker?.addEventListener("messageerror", this.#onWorkerError);
    endpoint.start?.();
    const { onProgress: _onProgress, cache, ...settings } = options;
    this.#post({ type: "load", source: postableSource(source), settings, cache: cache ?? false });
  }

  /** Resolves once the model is loaded; rejects if loading failed or the engine was disposed first. */
  get ready(): Promise<void> {
    return this.#ready;
  }

  get state(): EngineState {
    return this.#state;
  }

  /** What is loaded, where it came from, and how it runs (after `ready`). */
  get info(): WorkerEngineInfo {
    if (!this.#info || this.#state === "disposed") throw this.#notReadyError();
    return this.#info;
  }

  /** The model's description (after `ready`). */
  get config(): ModelConfig {
    return this.info.config;
  }

  /** Backend, provider and adapter of the loaded model (after `ready`). */
  get description(): string {
    return this.info.description;
  }

  /** Sequences that can run at once, and the context each has (after `ready`). */
  get limits(): WorkerEngineInfo["limits"] {
    return this.info.limits;
  }

  /** The KV pool the sequences share: page size, page count, bytes (after `ready`). */
  get kvPool(): WorkerEngineInfo["kvPool"] {
    return this.info.kvPool;
  }

  /** What the engine is doing now, asked of the worker. */
  stats(): Promise<EngineStats> {
    if (this.#state === "disposed" || this.#disposing) {
      return Promise.resolve({ state: "disposed", queued: 0, active: 0, freeSlots: 0, loopRunning: false });
    }
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#stats.set(id, resolve);
      this.#post({ type: "stats", id });
    });
  }

  /**
   * Generates from a prompt, chat messages or token ids, exactly as `Engine.generate`. Aborting the
   * signal ends the stream at once with `RequestAbortedError`, and frees the request's slot
   * in the worker.
   */
  generate(input: GenerateInput, options: GenerateOptions = {}): GenerationStream {
    const request = new RemoteRequest();
    const { signal, ...rest } = options;
    if (this.#state === "disposed" || this.#disposing) {
      request.fail(new EngineDisposedError());
      return request;
    }
    if (this.#state === "failed" && this.#failure) {
      request.fail(this.#failure);
      return request;
    }
    if (signal?.aborted) {
      request.fail(new RequestAbortedError(signal.reason));
      return request;
    }
    const id = this.#nextId++;
    this.#requests.set(id, request);
    if (signal) {
      const onAbort = () => {
        request.fail(new RequestAbortedError(signal.reason));
        this.#post({ type: "abort", id, reason: signal.reason === undefined ? undefined : serializeError(signal.reason) });
      };
      signal.addEventListener("abort", onAbort, { once: true });
      request.onSettled = () => signal.removeEventListener("abort", onAbort);
    }
    this.#post({ type: "generate", id, input, options: rest });
    return request;
  }

  /**
   * Disposes the engine in the worker (every request settles with EngineDisposedError),
   * waits until that is done, then terminates the worker. Safe to call more than once.
   */
  dispose(): Promise<void> {
    this.#disposing ??= this.#dispose();
    return this.#disposing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  async #dispose(): Promise<void> {
    if (this.#state !== "disposed" && !this.#workerGone) {
      const disposed = new Promise<void>((resolve) => (this.#onDisposed = resolve));
      this.#post({ type: "dispose" });
      await disposed;
    }
    this.#state = "disposed";
    this.#settleAll(new EngineDisposedError());
    this.#endpoint.removeEventListener("message", this.#onMessage);
    this.#worker?.removeEventListener("error", this.#onWorkerError);
    this.#worker?.removeEventListener("messageerror", this.#onWorkerError);
    this.#worker?.terminate();
  }

  #post(message: ClientMessage): void {
    this.#endpoint.postMessage(message);
  }

  #handle(message: WorkerMessage): void {
    switch (message.type) {
      case "progress":
        this.#options.onProgress?.(message.progress);
        return;
      case "ready":
        this.#info = message.info;
        if (this.#state === "loading") this.#state = "ready";
        this.#markReady();
        return;
      case "load-failed": {
        const error = reviveError(message.error);
        if (this.#state === "loading") {
          this.#state = "failed";
          this.#failure = error;
        }
        this.#markFailed(error);
        return;
      }
      case "chunk":
        this.#requests.get(message.id)?.push(message.chunk);
        return;
      case "result":
        this.#take(message.id)?.finish(message.result);
        this.#observe(message.state);
        return;
      case "error": {
        const error = reviveError(message.error);
        this.#take(message.id)?.fail(error);
        this.#observe(message.state, error);
        return;
      }
      case "stats": {
        const resolve = this.#stats.get(message.id);
        this.#stats.delete(message.id);
        resolve?.(message.stats);
        return;
      }
      case "disposed":
        this.#state = "disposed";
        this.#onDisposed?.();
        return;
    }
  }

  #take(id: number): RemoteRequest | undefined {
    const request = this.#requests.get(id);
    this.#requests.delete(id);
    return request;
  }

  /** Follows the engine into `failed` (a lost device) as its requests report it. */
  #observe(state: EngineState, error?: Error): void {
    if (state === "failed" && this.#state === "ready") {
      this.#state = "failed";
      this.#failure = error instanceof EngineFailedError ? error : new EngineFailedError(error?.message ?? "unknown", { cause: error });
    }
  }

  /** The worker died: nothing it held will answer. */
  #workerFailed(error: EngineFailedError): void {
    this.#workerGone = true;
    if (this.#state !== "disposed") {
      this.#state = "failed";
      this.#failure = error;
    }
    this.#markFailed(error);
    this.#settleAll(error);
    // A dispose waiting for the worker's answer would wait forever.
    this.#onDisposed?.();
  }

  #settleAll(error: Error): void {
    for (const request of this.#requests.values()) request.fail(error);
    this.#requests.clear();
    const disposed: EngineStats = { state: this.#state, queued: 0, active: 0, freeSlots: 0, loopRunning: false };
    for (const resolve of this.#stats.values()) resolve(disposed);
    this.#stats.clear();
  }

  #notReadyError(): Error {
    if (this.#state === "disposed") return new EngineDisposedError();
    if (this.#state === "failed" && this.#failure) return this.#failure;
    return new InvalidRequestError("engine", "the model is still loading; await engine.ready", "ENGINE_LOADING");
  }
}

/** {@link WorkerEngine}, resolved once the model is loaded (rejects, after disposing, if it cannot be). */
export async function loadWorkerEngine(
  endpoint: MessageEndpoint,
  source: ModelSource,
  options: WorkerEngineOptions = {},
): Promise<WorkerEngine> {
  const engine = new WorkerEngine(endpoint, source, options);
  try {
    await engine.ready;
  } catch (e) {
    await engine.dispose();
    throw e;
  }
  return engine;
}
