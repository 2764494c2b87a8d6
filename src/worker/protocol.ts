/**
 * The messages between a {@link WorkerEngine} (the page) and the engine's host (the Web
 * Worker). Every message is structured-clone safe: no functions, no GPU objects, errors as
 * {@link SerializedError}. One worker hosts one engine; requests are numbered by the client.
 */
import type { EngineOptions, EngineStats } from "../engine/engine.ts";
import type {
  EngineState,
  GenerateInput,
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  LoadProgress,
} from "../engine/types.ts";
import type { ModelConfig } from "../model/config.ts";
import type { KvPool } from "../model/runner.ts";
import type { SerializedError } from "./errors.ts";

/** A model source that can be posted to a worker: an http(s) URL, a `Blob`/`File`, or bytes. */
export type WorkerModelSource = string | Blob | Uint8Array;

/** Engine options that can cross to the worker: no callbacks, GPU objects or `fetch`. */
export type WorkerEngineSettings = Omit<EngineOptions, "gpu" | "device" | "fetch" | "onProgress">;

/** A URL model being downloaded into the browser's cache, before it is loaded. */
export interface DownloadProgress {
  readonly phase: "download";
  readonly bytesLoaded: number;
  readonly bytesTotal: number;
}

/** Load progress of a worker engine: the download (cached URL models only), then the engine's own. */
export type WorkerLoadProgress = LoadProgress | DownloadProgress;

/** What the header of the loaded model says, for display. */
export interface ModelDescription {
  /** `general.name`, or the file or URL name. */
  readonly name: string;
  readonly architecture: string;
  readonly fileSize: number;
  readonly parameterCount: number;
  readonly tensorCount: number;
  /** GGML types of the weights, largest share first (e.g. `["Q8_0", "F32"]`). */
  readonly weightTypes: readonly string[];
  /** `tokenizer.ggml.model`, e.g. `llama` or `gpt2`. */
  readonly tokenizer: string | null;
  /** Whether the model has `tokenizer.chat_template` (chat messages can be rendered). */
  readonly chatTemplate: boolean;
}

/** Where the model's bytes came from. */
export interface ModelOrigin {
  readonly kind: "url" | "blob" | "bytes";
  /** The URL or file name. */
  readonly name: string;
  /**
   * For URL models: `hit` (read from the browser's cache, no download), `stored` (downloaded
   * and cached now), `off` (caching not asked for) or `unavailable` (no OPFS here).
   */
  readonly cache: "hit" | "stored" | "off" | "unavailable";
}

/** What a worker engine knows once its model is loaded. */
export interface WorkerEngineInfo {
  readonly config: ModelConfig;
  /** Backend, provider and adapter, as `Engine.description`. */
  readonly description: string;
  readonly limits: { readonly maxSequences: number; readonly contextLength: number; readonly maxBatchTokens: number };
  /** The KV pool the sequences share, as `Engine.kvPool`. */
  readonly kvPool: KvPool;
  readonly model: ModelDescription;
  readonly origin: ModelOrigin;
}

/** Per-request options as they cross: the signal stays with the client, which sends `abort`. */
export type WorkerGenerateOptions = Omit<GenerateOptions, "signal">;

/** Client → worker. */
export type ClientMessage =
  | {
      readonly type: "load";
      readonly source: WorkerModelSource;
      readonly settings: WorkerEngineSettings;
      /** Cache http(s) models in the browser (OPFS) and read them from there next time. */
      readonly cache: boolean;
    }
  | {
      readonly type: "generate";
      readonly id: number;
      readonly input: GenerateInput;
      readonly options: WorkerGenerateOptions;
    }
  | { readonly type: "abort"; readonly id: number; readonly reason?: SerializedError }
  | { readonly type: "stats"; readonly id: number }
  | { readonly type: "dispose" };

/** Worker → client. */
export type WorkerMessage =
  | { readonly type: "progress"; readonly progress: WorkerLoadProgress }
  | { readonly type: "ready"; readonly info: WorkerEngineInfo }
  | { readonly type: "load-failed"; readonly error: SerializedError }
  | { readonly type: "chunk"; readonly id: number; readonly chunk: GenerationChunk }
  | { readonly type: "result"; readonly id: number; readonly result: GenerationResult; readonly state: EngineState }
  | { readonly type: "error"; readonly id: number; readonly error: SerializedError; readonly state: EngineState }
  | { readonly type: "stats"; readonly id: number; readonly stats: EngineStats }
  | { readonly type: "disposed" };

/**
 * One side of a message channel: a `Worker`, the worker's global scope, or a `MessagePort`.
 * Kept this small so tests can run host and client over a `MessageChannel`, in one thread.
 */
export interface MessageEndpoint {
  postMessage(message: unknown): void;
  addEventListener(type: "message", listener: (event: MessageEvent) => void): void;
  removeEventListener(type: "message", listener: (event: MessageEvent) => void): void;
  /** `MessagePort`s deliver nothing until started. */
  start?(): void;
}
