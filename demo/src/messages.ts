/**
 * Errors as people should read them. The runtime's errors carry a `name` and `code`
 * (kept across the worker boundary), so each known failure gets a plain sentence and,
 * where there is one, what to do about it.
 */
import { GpuError, InvalidRequestError, LlmError, SourceError } from "./runtime.ts";
import { formatBytes } from "./format.ts";

export interface FriendlyError {
  readonly title: string;
  readonly detail: string;
}

/** Codes after which running on the CPU is the sensible next step. */
const CPU_FALLBACK_CODES = new Set(["NO_WEBGPU", "NO_ADAPTER", "GPU_UNSUPPORTED"]);

/** Whether a failed WebGPU load should be retried on the CPU backend. */
export function shouldFallBackToCpu(error: unknown): boolean {
  return error instanceof LlmError && CPU_FALLBACK_CODES.has(error.code);
}

/** The failure in words, with the technical message kept as detail. */
export function describeError(error: unknown): FriendlyError {
  const raw = error instanceof Error ? error.message : String(error);
  if (error instanceof GpuError) {
    switch (error.code) {
      case "LIMIT_TOO_LOW": {
        const amounts = error.needed !== undefined && error.available !== undefined
          ? ` It needs ${formatBytes(error.needed)} where this GPU allows ${formatBytes(error.available)}${error.limit ? ` (${error.limit})` : ""}.`
          : "";
        return { title: `This model needs more than this GPU offers.${amounts} Try a smaller model, or run it on the CPU.`, detail: raw };
      }
      case "OUT_OF_MEMORY":
        return { title: "The GPU ran out of memory for this model. Try a smaller or more strongly quantized model.", detail: raw };
      case "DEVICE_LOST":
        return { title: "The GPU was reset (the browser or driver took it back). Load the model again.", detail: raw };
      case "NO_WEBGPU":
      case "NO_ADAPTER":
        return { title: "WebGPU is not available here, so the model cannot run on the GPU.", detail: raw };
      case "GPU_UNSUPPORTED":
        return { title: "Part of this model cannot run on the GPU yet.", detail: raw };
      case "GPU_TIMEOUT":
        return { title: "The GPU stopped answering (no work finished for a minute). Load the model again, or try a smaller one.", detail: raw };
      default:
        return { title: "The GPU reported an error.", detail: raw };
    }
  }
  if (error instanceof SourceError) {
    switch (error.code) {
      case "HTTP_STATUS":
        return {
          title: error.status === 404 ? "There is no model at that address (HTTP 404)." : `The server refused the model (HTTP ${error.status ?? "error"}).`,
          detail: raw,
        };
      case "RANGE_UNSUPPORTED":
        return { title: "That server cannot send parts of a file (HTTP range requests), which loading a model needs.", detail: raw };
      case "FETCH_FAILED":
        return {
          title: "The model could not be fetched. Check the address and your connection; the server must also allow requests from other sites (CORS).",
          detail: raw,
        };
      default:
        return { title: "The model file could not be read.", detail: raw };
    }
  }
  if (error instanceof LlmError) {
    switch (error.name) {
      case "GGUFError":
        return { title: "This is not a GGUF model this page can read.", detail: raw };
      case "UnsupportedTensorTypeError":
        return { title: "This model stores weights in a format this runtime cannot run yet.", detail: raw };
      case "ModelConfigError":
        return { title: "This model's architecture or settings are not supported (llama, qwen2 and qwen3 are).", detail: raw };
      case "TokenizerError":
        return error.code === "NO_CHAT_TEMPLATE"
          ? { title: "This model has no chat template. Switch to Complete mode to continue text instead.", detail: raw }
          : { title: "The text could not be prepared for the model.", detail: raw };
      case "EngineFailedError":
        return error.cause !== undefined ? describeError(error.cause) : { title: "The model stopped working.", detail: raw };
      case "EngineDisposedError":
        return { title: "The model was unloaded.", detail: raw };
    }
    if (error instanceof InvalidRequestError && error.code === "PROMPT_TOO_LONG") {
      return { title: "The conversation no longer fits in the model's context. Start a new chat.", detail: raw };
    }
    if (error instanceof InvalidRequestError) return { title: `A setting is out of range: ${raw}`, detail: raw };
  }
  return { title: "Something went wrong.", detail: raw };
}
