/**
 * The page's one engine: which model is loaded, on which backend, in which worker. Loading
 * a model disposes the previous engine first (awaited, so two never hold GPU memory at
 * once); `auto` tries WebGPU and falls back to the CPU where WebGPU cannot run the model.
 */
import {
  EngineDisposedError,
  type ModelSource,
  WorkerEngine,
  type WorkerEngineInfo,
  type WorkerLoadProgress,
} from "./runtime.ts";
import { shouldFallBackToCpu } from "./messages.ts";

export type BackendPreference = "auto" | "webgpu" | "cpu";

/** What to load. */
export type ModelChoice =
  | { readonly kind: "default"; readonly url: string }
  | { readonly kind: "url"; readonly url: string }
  | { readonly kind: "file"; readonly file: File };

export interface LoadedModel {
  readonly engine: WorkerEngine;
  readonly info: WorkerEngineInfo;
  readonly choice: ModelChoice;
  readonly backend: "webgpu" | "cpu";
  /** Why WebGPU was not used, when `auto` fell back to the CPU. */
  readonly fallbackReason?: unknown;
}

function startWorker(): Worker {
  return new Worker(new URL("../../src/worker/worker.ts", import.meta.url), { type: "module", name: "gguf-webgpu engine" });
}

export class EngineSession {
  #loaded: LoadedModel | undefined;
  /** The engine being loaded now, so Cancel and a newer load can dispose it. */
  #pending: WorkerEngine | undefined;
  /** Loads, one after another: each waits for the previous one to settle. */
  #queue: Promise<unknown> = Promise.resolve();

  get loaded(): LoadedModel | undefined {
    return this.#loaded;
  }

  /** Unloads what is there, then loads `choice`. Rejects with EngineDisposedError if cancelled. */
  load(choice: ModelChoice, preference: BackendPreference, onProgress: (p: WorkerLoadProgress) => void): Promise<LoadedModel> {
    void this.#pending?.dispose();
    const run = this.#queue.then(() => this.#load(choice, preference, onProgress));
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Stops a load in progress (its promise rejects with EngineDisposedError). */
  async cancel(): Promise<void> {
    await this.#pending?.dispose();
  }

  /** Disposes the engine (awaited: the worker is gone and its GPU memory released after this). */
  async unload(): Promise<void> {
    const loaded = this.#loaded;
    this.#loaded = undefined;
    await this.#pending?.dispose();
    await loaded?.engine.dispose();
  }

  async #load(choice: ModelChoice, preference: BackendPreference, onProgress: (p: WorkerLoadProgress) => void): Promise<LoadedModel> {
    await this.unload();
    const source: ModelSource = choice.kind === "file" ? choice.file : choice.url;
    // Only models fetched from elsewhere are cached: the default one is served with the page.
    const cache = choice.kind === "url";
    const gpuPossible = typeof navigator.gpu !== "undefined";
    const first = preference === "cpu" || (preference === "auto" && !gpuPossible) ? "cpu" : "webgpu";
    try {
      const engine = await this.#start(source, first, cache, onProgress);
      return this.#keep({ engine, info: engine.info, choice, backend: first });
    } catch (error) {
      if (preference !== "auto" || first === "cpu" || !shouldFallBackToCpu(error)) throw error;
      const engine = await this.#start(source, "cpu", cache, onProgress);
      return this.#keep({ engine, info: engine.info, choice, backend: "cpu", fallbackReason: error });
    }
  }

  #keep(model: LoadedModel): LoadedModel {
    this.#loaded = model;
    return model;
  }

  async #start(
    source: ModelSource,
    backend: "webgpu" | "cpu",
    cache: boolean,
    onProgress: (p: WorkerLoadProgress) => void,
  ): Promise<WorkerEngine> {
    const engine = new WorkerEngine(startWorker(), source, {
      backend,
      cache,
      onProgress,
      maxSequences: 1,
      // No contextLength: the engine's default (the trained context, capped at 8192) already
      // keeps a 128k-context model from asking for gigabytes of KV cache, and a fixed number
      // here would be refused by models trained on less.
    });
    this.#pending = engine;
    try {
      await engine.ready;
      if (engine.state === "disposed") throw new EngineDisposedError();
      return engine;
    } catch (error) {
      await engine.dispose();
      throw error;
    } finally {
      if (this.#pending === engine) this.#pending = undefined;
    }
  }
}
