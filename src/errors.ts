/**
 * Every error the runtime throws on purpose is one of these classes. Each carries a
 * stable `code` (for programs) and a `name` (so the type survives a worker boundary,
 * where `instanceof` does not), and its message names the file, field, offset or value
 * that is wrong.
 */
export class LlmError extends Error {
  /** A stable, machine-readable identifier of the failure, e.g. `GGUF_TRUNCATED`. */
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Where in a GGUF file a problem was found. */
export interface GGUFErrorLocation {
  /** The file, URL or blob name being read. */
  file?: string;
  /** Byte offset inside that file. */
  offset?: number;
  /** Metadata key or tensor name. */
  field?: string;
}

/** A GGUF file is malformed, truncated, or holds something this runtime cannot use. */
export class GGUFError extends LlmError {
  readonly file?: string;
  readonly offset?: number;
  readonly field?: string;

  constructor(code: string, message: string, where: GGUFErrorLocation = {}, options?: ErrorOptions) {
    super(code, withLocation(message, where), options);
    this.file = where.file;
    this.offset = where.offset;
    this.field = where.field;
  }
}

/** A tensor's GGML type is one the runtime cannot run; refused at load time. */
export class UnsupportedTensorTypeError extends GGUFError {
  constructor(tensor: string, typeName: string, file?: string) {
    super("UNSUPPORTED_TENSOR_TYPE", `tensor "${tensor}" has type ${typeName}, which this runtime cannot run`, {
      file,
      field: tensor,
    });
  }
}

/** Model metadata is missing a key, or holds values that contradict each other. */
export class ModelConfigError extends LlmError {
  readonly key: string;
  constructor(key: string, message: string) {
    super("MODEL_CONFIG", `${key}: ${message}`);
    this.key = key;
  }
}

/** A model source (path, URL, blob) could not be read: 404, no range support, I/O error. */
export class SourceError extends LlmError {
  readonly source: string;
  readonly status?: number;
  constructor(code: string, source: string, message: string, status?: number, options?: ErrorOptions) {
    super(code, `${source}: ${message}`, options);
    this.source = source;
    this.status = status;
  }
}

/** Text could not be tokenized or a chat could not be rendered with the model's template. */
export class TokenizerError extends LlmError {}

/** Bad arguments to a public function or CLI command. */
export class InvalidArgumentError extends LlmError {
  readonly param: string;
  constructor(param: string, message: string) {
    super("INVALID_ARGUMENT", `${param}: ${message}`);
    this.param = param;
  }
}

/** A request's options or input are invalid; `param` names the option. */
export class InvalidRequestError extends LlmError {
  readonly param: string;
  constructor(param: string, message: string, code = "INVALID_REQUEST") {
    super(code, `${param}: ${message}`);
    this.param = param;
  }
}

function withLocation(message: string, where: GGUFErrorLocation): string {
  const parts: string[] = [];
  if (where.file !== undefined) parts.push(where.file);
  if (where.field !== undefined) parts.push(`field "${where.field}"`);
  if (where.offset !== undefined) parts.push(`offset ${where.offset}`);
  return parts.length > 0 ? `${message} (${parts.join(", ")})` : message;
}

/** Why a GPU operation failed; see {@link GpuError}. */
export type GpuErrorCode =
  | "NO_WEBGPU"
  | "NO_ADAPTER"
  | "LIMIT_TOO_LOW"
  | "OUT_OF_MEMORY"
  | "DEVICE_LOST"
  | "GPU_VALIDATION"
  | "SHADER_COMPILE"
  | "GPU_TIMEOUT"
  | "DEVICE_DESTROY_TIMEOUT"
  | "GPU_UNSUPPORTED";

/**
 * WebGPU is missing, too small for the model, or failed at run time (allocation,
 * validation, shader compilation, device loss). `limit`/`needed`/`available` are set for
 * `LIMIT_TOO_LOW`; `label` names the buffer, pipeline variant or pass involved.
 */
export class GpuError extends LlmError {
  declare readonly code: GpuErrorCode;
  readonly label?: string;
  readonly limit?: string;
  readonly needed?: number;
  readonly available?: number;

  constructor(
    code: GpuErrorCode,
    message: string,
    details: { label?: string; limit?: string; needed?: number; available?: number } = {},
    options?: ErrorOptions,
  ) {
    super(code, message, options);
    this.label = details.label;
    this.limit = details.limit;
    this.needed = details.needed;
    this.available = details.available;
  }
}
