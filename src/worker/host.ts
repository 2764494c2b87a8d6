/**
 * The worker side of a {@link WorkerEngine}: receives {@link ClientMessage}s, runs one
 * engine, and answers with {@link WorkerMessage}s. `worker.ts` runs it on a Web Worker's
 * global scope; tests run it on one end of a `MessageChannel`.
 *
 * Requests that arrive while the model is still being fetched wait for the engine; each
 * has its own AbortController, so an `abort` message cancels it whether it is waiting,
 * queued in the engine or decoding. `dispose` aborts a download in progress, disposes the
 * engine (which settles every request), and only then answers `disposed`.
 */
import { createEngine, type Engine, type EngineStats } from "../engine/engine.ts";
import { EngineDisposedError, EngineFailedError } from "../engine/errors.ts";
import { GGUFError, SourceError } from "../errors.ts";
import type { GenerationStream } from "../engine/types.ts";
import { ggmlTypeName } from "../gguf/ggml-type.ts";
import { type GGUFFile, openGGUF } from "../gguf/reader.ts";
import { isHttpUrl } from "../gguf/source.ts";
import { reviveError, serializeError } from "./errors.ts";
import { ModelCache } from "./model-cache.ts";
import type {
  ClientMessage,
  MessageEndpoint,
  ModelDescription,
  ModelOrigin,
  WorkerMessage,
  WorkerModelSource,
} from "./protocol.ts";

/** How a host finds its model cache (tests and non-browser hosts pass their own or none). */
export interface EngineHostOptions {
  /** Opens the cache used for `cache: true` URL loads; default: OPFS where it exists. */
  readonly openCache?: () => Promise<ModelCache | undefined>;
  /** The `fetch` for URL models and downloads. */
  readonly fetch?: typeof fetch;
}

/** Download progress is posted at most this often (a fast network delivers thousands of chunks a second). */
const DOWNLOAD_PROGRESS_INTERVAL_MS = 50;

function modelName(file: GGUFFile): string {
  const name = file.metadata["general.name"];
  if (typeof name === "string" && name !== "") return name;
  return file.name.split(/[\\/]/).pop()?.split("?")[0] ?? file.name;
}

/** The display facts of an open model, from its header. */
export function describeModel(file: GGUFFile): ModelDescription {
  const bytesByType = new Map<string, number>();
  let parameterCount = 0;
  for (const t of file.tensors) {
    const type = ggmlTypeName(t.type);
    bytesByType.set(type, (bytesByType.get(type) ?? 0) + t.byteLength);
    parameterCount += t.nElements;
  }
  const arch = file.metadata["general.architecture"];
  const tokenizer = file.metadata["tokenizer.ggml.model"];
  return {
    name: modelName(file),
    architecture: typeof arch === "string" ? arch : "unknown",
    fileSize: file.fileSize,
    parameterCount,
    tensorCount: file.tensors.length,
    weightTypes: [...bytesByType].sort((a, b) => b[1] - a[1]).map(([type]) => type),
    tokenizer: typeof tokenizer === "string" ? tokenizer : null,
    chatTemplate: typeof file.metadata["tokenizer.chat_template"] === "string",
  };
}

/** A fetch that can replay the range answers it recorded. */
interface ReplayingFetch {
  readonly fetch: typeof fetch;
  /** From now on, replay what was recorded but record nothing new (tensor data must not pile up). */
  stopRecording(): void;
  /** Drops what was recorded; later requests all go to the network. */
  forget(): void;
}

/**
 * Lets the engine's header read of a URL model be answered from the one made just before
 * for {@link describeModel}: same ranges, so without this a model's first megabytes would
 * cross the network twice. Only range requests are recorded, and only until
 * `stopRecording()`.
 */
function replayingFetch(base: typeof fetch): ReplayingFetch {
  interface Recorded {
    readonly status: number;
    readonly statusText: string;
    readonly headers: [string, string][];
    readonly body: ArrayBuffer;
  }
  const recorded = new Map<string, Promise<Recorded>>();
  let recording = true;
  const replaying: typeof fetch = async (input, init) => {
    const range = new Headers(init?.headers).get("range");
    const url = input instanceof Request ? input.url : String(input);
    const key = `${url}\n${range}`;
    let answer = range === null ? undefined : recorded.get(key);
    if (!answer) {
      if (!recording || range === null) return base(input, init);
      answer = base(input, init).then(async (res) => ({
        status: res.status,
        statusText: res.statusText,
        headers: [...res.headers],
        body: await res.arrayBuffer(),
      }));
      recorded.set(key, answer);
      answer.catch(() => recorded.delete(key));
    }
    const r = await answer;
    return new Response(r.body.slice(0), { status: r.status, statusText: r.statusText, headers: r.headers });
  };
  return {
    fetch: replaying,
    stopRecording: () => {
      recording = false;
    },
    forget: () => {
      recording = false;
      recorded.clear();
    },
  };
}

class EngineHost {
  readonly #endpoint: MessageEndpoint;
  readonly #options: EngineHostOptions;
  /** Aborts a download or header read in progress when the engine is disposed. */
  readonly #loadController = new AbortController();
  readonly #requests = new Map<number, AbortController>();
  #engine: Promise<Engine> | undefined;
  #disposing: Promise<void> | undefined;

  constructor(endpoint: MessageEndpoint, options: EngineHostOptions) {
    this.#endpoint = endpoint;
    this.#options = options;
  }

  handle(message: ClientMessage): void {
    switch (message.type) {
      case "load":
        this.#load(message);
        return;
      case "generate":
        void this.#generate(message);
        return;
      case "abort":
        this.#requests.get(message.id)?.abort(message.reason === undefined ? undefined : reviveError(message.reason));
        return;
      case "stats":
        void this.#stats(message.id);
        return;
      case "dispose":
        this.#disposing ??= this.#dispose();
        return;
    }
  }

  #post(message: WorkerMessage): void {
    this.#endpoint.postMessage(message);
  }

  #load(message: Extract<ClientMessage, { type: "load" }>): void {
    if (this.#engine) {
      this.#post({ type: "load-failed", error: serializeError(new Error("this worker already holds an engine")) });
      return;
    }
    const started = this.#start(message);
    this.#engine = started.then(({ engine }) => engine);
    this.#engine.catch(() => {});
    started.then(
      async ({ engine, model, origin, headerFetch }) => {
        try {
          await engine.ready;
          this.#post({
            type: "ready",
            info: { config: engine.config, description: engine.description, limits: engine.limits, kvPool: engine.kvPool, model, origin },
          });
        } catch (e) {
          this.#loadFailed(e);
        } finally {
          headerFetch.forget();
        }
      },
      (e: unknown) => this.#loadFailed(e),
    );
  }

  /** Whatever a load died of while the engine was being disposed, the cause was the disposal. */
  #loadFailed(error: unknown): void {
    this.#post({ type: "load-failed", error: serializeError(this.#disposing ? new EngineDisposedError() : error) });
  }

  /**
   * Fetches the model into the cache first when asked to, reads its header for
   * {@link ModelDescription} (the engine does not expose its file), then creates the engine.
   */
  async #start(message: Extract<ClientMessage, { type: "load" }>): Promise<{
    engine: Engine;
    model: ModelDescription;
    origin: ModelOrigin;
    headerFetch: ReplayingFetch;
  }> {
    const { source, origin } = await this.#resolveSource(message.source, message.cache);
    const headerFetch = replayingFetch(this.#options.fetch ?? globalThis.fetch);
    let model: ModelDescription;
    try {
      const file = await openGGUF(source, { fetch: headerFetch.fetch, signal: this.#loadController.signal });
      try {
        model = describeModel(file);
      } finally {
        await file.close();
      }
      headerFetch.stopRecording();
      if (this.#disposing) throw new EngineDisposedError();
    } catch (e) {
      headerFetch.forget();
      throw e;
    }
    const engine = createEngine(source, {
      ...message.settings,
      fetch: headerFetch.fetch,
      onProgress: (progress) => this.#post({ type: "progress", progress }),
    });
    return { engine, model, origin, headerFetch };
  }

  async #resolveSource(source: WorkerModelSource, cache: boolean): Promise<{ source: WorkerModelSource; origin: ModelOrigin }> {
    if (source instanceof Uint8Array) return { source, origin: { kind: "bytes", name: "memory", cache: "off" } };
    if (source instanceof Blob) {
      const name = typeof File !== "undefined" && source instanceof File ? source.name : "blob";
      return { source, origin: { kind: "blob", name, cache: "off" } };
    }
    if (!cache || !isHttpUrl(source)) return { source, origin: { kind: "url", name: source, cache: "off" } };
    const store = await (this.#options.openCache ?? (() => ModelCache.open()))();
    if (!store) return { source, origin: { kind: "url", name: source, cache: "unavailable" } };
    const hit = await store.get(source);
    if (hit) return { source: hit, origin: { kind: "url", name: source, cache: "hit" } };
    const signal = this.#loadController.signal;
    await this.#checkMagic(source, signal);
    let lastPost = -Infinity;
    const file = await store.download(source, {
      signal,
      fetch: this.#options.fetch,
      onProgress: (bytesLoaded, bytesTotal) => {
        const now = performance.now();
        if (now - lastPost < DOWNLOAD_PROGRESS_INTERVAL_MS && bytesLoaded < bytesTotal) return;
        lastPost = now;
        this.#post({ type: "progress", progress: { phase: "download", bytesLoaded, bytesTotal } });
      },
    });
    return { source: file, origin: { kind: "url", name: source, cache: "stored" } };
  }

  /**
   * One small request before the download: the file must start like a GGUF, so an error
   * page or a Git LFS pointer under a model's name fails at once, not after a long
   * download. (The full header is checked on load.) A server that ignores the range and
   * sends the whole file is fine here: only its first bytes are read.
   */
  async #checkMagic(url: string, signal: AbortSignal): Promise<void> {
    const fetchFn = this.#options.fetch ?? globalThis.fetch;
    let res: Response;
    try {
      res = await fetchFn(url, { headers: { Range: "bytes=0-3" }, signal });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const why = err instanceof Error ? err.message : String(err);
      throw new SourceError("FETCH_FAILED", url, `request for bytes 0-3 failed: ${why}`, undefined, { cause: err });
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new SourceError("HTTP_STATUS", url, `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`, res.status);
    }
    const head = await firstBytes(res, 4);
    if (head.byteLength === 4 && new TextDecoder().decode(head) === "GGUF") return;
    const hex = Array.from(head, (b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new GGUFError("NOT_GGUF", `not a GGUF file: it starts with bytes [${hex}], not "GGUF"`, { file: url, offset: 0 });
  }

  async #generate(message: Extract<ClientMessage, { type: "generate" }>): Promise<void> {
    const { id } = message;
    const controller = new AbortController();
    this.#requests.set(id, controller);
    let engine: Engine | undefined;
    try {
      engine = await this.#awaitEngine();
      const stream: GenerationStream = engine.generate(message.input, { ...message.options, signal: controller.signal });
      for await (const chunk of stream) this.#post({ type: "chunk", id, chunk });
      const result = await stream.result;
      this.#post({ type: "result", id, result, state: engine.state });
    } catch (e) {
      this.#post({ type: "error", id, error: serializeError(e), state: engine?.state ?? (this.#disposing ? "disposed" : "failed") });
    } finally {
      this.#requests.delete(id);
    }
  }

  /** The engine, or the error a request would get from an engine whose load failed. */
  async #awaitEngine(): Promise<Engine> {
    if (this.#disposing) throw new EngineDisposedError();
    if (!this.#engine) throw new EngineFailedError("no model was loaded in this worker");
    try {
      return await this.#engine;
    } catch (e) {
      if (e instanceof EngineDisposedError) throw e;
      throw new EngineFailedError(e instanceof Error ? e.message : String(e), { cause: e });
    }
  }

  async #stats(id: number): Promise<void> {
    let stats: EngineStats;
    try {
      stats = (await this.#awaitEngine()).stats();
    } catch {
      stats = { state: this.#disposing ? "disposed" : "failed", queued: 0, active: 0, freeSlots: 0, loopRunning: false };
    }
    this.#post({ type: "stats", id, stats });
  }

  async #dispose(): Promise<void> {
    this.#loadController.abort(new EngineDisposedError());
    const engine = await this.#engine?.catch(() => undefined);
    try {
      await engine?.dispose();
    } finally {
      this.#post({ type: "disposed" });
    }
  }
}

/** The first `n` bytes of a body (fewer if it is shorter); the rest is not downloaded. */
async function firstBytes(res: Response, n: number): Promise<Uint8Array> {
  const reader = res.body?.getReader();
  if (!reader) return new Uint8Array(0);
  const out = new Uint8Array(n);
  let got = 0;
  try {
    while (got < n) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(n - got, value.byteLength);
      out.set(value.subarray(0, take), got);
      got += take;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return out.subarray(0, got);
}

/** Serves one engine over `endpoint` (a worker's global scope, or a `MessagePort`). */
export function serveEngine(endpoint: MessageEndpoint, options: EngineHostOptions = {}): void {
  const host = new EngineHost(endpoint, options);
  endpoint.addEventListener("message", (event: MessageEvent<ClientMessage>) => host.handle(event.data));
  endpoint.start?.();
}
