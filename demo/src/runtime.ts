/**
 * What the page thread uses of the runtime. The engine itself runs in the worker (its own
 * chunk); importing the client, the errors and the cache from their modules rather than
 * from src/index.ts keeps the GGUF parser, tokenizers and Jinja out of the page's bundle.
 */
export { WorkerEngine } from "../../src/worker/client.ts";
export { ModelCache } from "../../src/worker/model-cache.ts";
export { GpuError, LlmError, SourceError } from "../../src/errors.ts";
export { EngineDisposedError, InvalidRequestError, RequestAbortedError } from "../../src/engine/errors.ts";
export type { CachedModel } from "../../src/worker/model-cache.ts";
export type { ModelSource } from "../../src/engine/backends.ts";
export type { ChatMessage, GenerateInput, GenerateOptions, GenerationResult } from "../../src/engine/types.ts";
export type { WorkerEngineInfo, WorkerLoadProgress } from "../../src/worker/protocol.ts";
export type { KvPool } from "../../src/model/runner.ts";
