/** Errors of the engine and of single requests. Each carries `name` and `code`. */
import { LlmError } from "../errors.ts";

/** The engine was disposed; every pending and running request settles with this. */
export class EngineDisposedError extends LlmError {
  constructor() {
    super("ENGINE_DISPOSED", "the engine was disposed");
  }
}

/**
 * The engine cannot serve requests: loading failed, or the device was lost or raised an
 * error while running. `cause` holds the original error.
 */
export class EngineFailedError extends LlmError {
  constructor(reason: string, options?: ErrorOptions) {
    super("ENGINE_FAILED", `the engine failed: ${reason}`, options);
  }
}

/** A request's `signal` was aborted; its stream ends and its KV slot is freed. */
export class RequestAbortedError extends LlmError {
  constructor(reason?: unknown) {
    super("ABORTED", "the request was aborted", reason === undefined ? undefined : { cause: reason });
  }
}

export { InvalidRequestError } from "../errors.ts";
