/**
 * gguf-webgpu: GGUF language models on WebGPU, in the browser, Deno and Node.
 *
 * ```ts
 * import { loadEngine } from "gguf-webgpu";
 * const engine = await loadEngine("https://example.com/model.gguf");   // or a File, or bytes
 * for await (const chunk of engine.generate([{ role: "user", content: "Hello" }])) print(chunk.text);
 * await engine.dispose();
 * ```
 *
 * Everything here is safe to import in a browser: modules that need Node or Deno APIs load
 * them only inside the code path that reads a local file.
 */

// Declares `Symbol.asyncDispose` and `AsyncDisposable` for consumers whose TypeScript lib
// lacks ESNext.Disposable (the shipped .d.ts files use them).
import "./disposable-types.ts";

// The engine and its request API.
export { createEngine, Engine, type EngineOptions, type EngineStats, type KvStats, loadEngine } from "./engine/engine.ts";
export type { KvPool } from "./model/runner.ts";
export type { ModelSource, RunnerChoice } from "./engine/backends.ts";
export type {
  ChatMessage,
  EngineState,
  FinishReason,
  GenerateInput,
  GenerateOptions,
  GenerationChoice,
  GenerationChunk,
  GenerationResult,
  GenerationStream,
  LoadProgress,
  Timings,
  TokenPrompt,
  Usage,
} from "./engine/types.ts";
export { choiceSeed, DEFAULT_GENERATE_OPTIONS, MAX_CHOICES } from "./engine/options.ts";
export type { EmbeddingResult, EmbedInput, EmbedOptions, Pooling } from "./engine/embed.ts";
export {
  parseToolCalls,
  type ToolCall,
  type ToolCallDelta,
  type ToolCallFormat,
  toolCallFormatOf,
  type ToolChoice,
  type ToolDefinition,
} from "./engine/tool-calls.ts";

// The engine in a Web Worker: the same API from the page, the work off the main thread.
export { loadWorkerEngine, WorkerEngine, type WorkerEngineOptions } from "./worker/client.ts";
export { describeModel, type EngineHostOptions, serveEngine } from "./worker/host.ts";
export type {
  DownloadProgress,
  MessageEndpoint,
  ModelDescription,
  ModelOrigin,
  WorkerEngineInfo,
  WorkerEngineSettings,
  WorkerLoadProgress,
} from "./worker/protocol.ts";
export { type CachedModel, DEFAULT_MODEL_CACHE_NAME, type DownloadOptions, ModelCache } from "./worker/model-cache.ts";
export { reviveError, type SerializedError, serializeError } from "./worker/errors.ts";

// Errors: every error the runtime throws on purpose, each with `name` and `code`.
export {
  GGUFError,
  type GGUFErrorLocation,
  GpuError,
  type GpuErrorCode,
  InvalidArgumentError,
  LlmError,
  ModelConfigError,
  SourceError,
  TokenizerError,
  UnsupportedTensorTypeError,
} from "./errors.ts";
export { EngineDisposedError, EngineFailedError, InvalidRequestError, RequestAbortedError } from "./engine/errors.ts";

// Model inspection: the header of a GGUF file and the runtime's view of the model.
export { type GGUFFile, type GGUFTensorInfo, openGGUF, type OpenGGUFOptions } from "./gguf/reader.ts";
export type { Metadata, MetadataValue } from "./gguf/metadata.ts";
export { GGMLType, ggmlTypeName } from "./gguf/ggml-type.ts";
export {
  type Architecture,
  type ModelConfig,
  modelConfigFromGGUF,
  type RopeConfig,
  type RopeLayout,
  type RopeScaling,
} from "./model/config.ts";

// Tokenizers and chat templates, straight from a model's metadata.
export {
  type DecodeOptions,
  type EncodeOptions,
  renderChat,
  type RenderChatOptions,
  type StreamDecoder,
  type Tokenizer,
  tokenizerFromMetadata,
  type TokenizerMetadata,
} from "./tokenizer/index.ts";
