/**
 * Errors across a worker boundary. Structured cloning keeps an Error's message but not its
 * class, code or fields, so errors travel as {@link SerializedError} and are re-created on
 * the other side as instances of the right class (`instanceof` works again).
 *
 * The class is found with `instanceof` against a registry keyed by fixed strings rather
 * than read from `error.name`: a minifying bundler may rename classes, and the key, not
 * the (possibly mangled) constructor name, is what crosses the boundary and becomes `name`.
 */
import {
  GGUFError,
  GpuError,
  InvalidArgumentError,
  LlmError,
  ModelConfigError,
  SourceError,
  TokenizerError,
  UnsupportedTensorTypeError,
} from "../errors.ts";
import { EngineDisposedError, EngineFailedError, InvalidRequestError, RequestAbortedError } from "../engine/errors.ts";

/** The runtime's error classes, most derived first (the first `instanceof` match wins). */
const LLM_ERROR_CLASSES = {
  UnsupportedTensorTypeError,
  GGUFError,
  ModelConfigError,
  SourceError,
  TokenizerError,
  InvalidArgumentError,
  GpuError,
  EngineDisposedError,
  EngineFailedError,
  RequestAbortedError,
  InvalidRequestError,
  LlmError,
} as const;

/** Names of the runtime's error classes that can cross the boundary. */
export type LlmErrorKind = keyof typeof LLM_ERROR_CLASSES;

/** Built-in error constructors re-created by name. */
const BUILTIN_ERRORS = { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError } as const;

type BuiltinErrorKind = keyof typeof BUILTIN_ERRORS;

/** A field value that survives the trip unchanged. */
export type SerializedField = string | number | boolean | null;

/** An error as it crosses a worker boundary (structured-clone safe). */
export interface SerializedError {
  /** Which class to re-create: a runtime error class, a built-in error, or a DOMException. */
  readonly kind: LlmErrorKind | BuiltinErrorKind | "DOMException";
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly stack?: string;
  /** The error's own fields with primitive values (`param`, `file`, `offset`, `status`, ...). */
  readonly fields: Readonly<Record<string, SerializedField>>;
  /** The `cause`, serialized the same way (a few levels deep). */
  readonly cause?: SerializedError | SerializedField;
}

/** Fields carried by `name`, `message`, `stack` and `cause` themselves. */
const SKIPPED_FIELDS = new Set(["name", "message", "stack", "cause", "code"]);

/** Causes nest at most this deep; deeper ones are dropped (a cycle must not hang the worker). */
const MAX_CAUSE_DEPTH = 4;

function isField(v: unknown): v is SerializedField {
  return v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean";
}

function isLlmKind(kind: string): kind is LlmErrorKind {
  return Object.hasOwn(LLM_ERROR_CLASSES, kind);
}

function isBuiltinKind(kind: string): kind is BuiltinErrorKind {
  return Object.hasOwn(BUILTIN_ERRORS, kind);
}

function llmKindOf(error: LlmError): LlmErrorKind {
  for (const kind of Object.keys(LLM_ERROR_CLASSES)) {
    if (isLlmKind(kind) && error instanceof LLM_ERROR_CLASSES[kind]) return kind;
  }
  return "LlmError";
}

function builtinKindOf(error: Error): BuiltinErrorKind {
  return isBuiltinKind(error.name) ? error.name : "Error";
}

function ownFields(error: Error): Record<string, SerializedField> {
  const fields: Record<string, SerializedField> = {};
  for (const [key, value] of Object.entries(error)) {
    if (!SKIPPED_FIELDS.has(key) && isField(value)) fields[key] = value;
  }
  return fields;
}

/** Turns anything thrown into a {@link SerializedError}. */
export function serializeError(error: unknown, depth = 0): SerializedError {
  if (!(error instanceof Error)) {
    const message = typeof error === "string" ? error : `non-error value thrown: ${safeString(error)}`;
    return { kind: "Error", name: "Error", message, fields: {} };
  }
  const isDom = typeof DOMException !== "undefined" && error instanceof DOMException;
  const kind = error instanceof LlmError ? llmKindOf(error) : isDom ? "DOMException" : builtinKindOf(error);
  const code = error instanceof LlmError ? error.code : undefined;
  const cause = error.cause;
  let serializedCause: SerializedError | SerializedField | undefined;
  if (cause !== undefined && depth < MAX_CAUSE_DEPTH) {
    serializedCause = isField(cause) ? cause : serializeError(cause, depth + 1);
  }
  return {
    kind,
    // A known class's key is its true name, whatever a minifier did to the constructor.
    name: kind === "DOMException" || kind === "Error" ? error.name : kind,
    message: error.message,
    ...(code !== undefined ? { code } : {}),
    ...(error.stack !== undefined ? { stack: error.stack } : {}),
    fields: isDom ? {} : ownFields(error),
    ...(serializedCause !== undefined ? { cause: serializedCause } : {}),
  };
}

function safeString(v: unknown): string {
  try {
    return String(v);
  } catch {
    return typeof v;
  }
}

function reviveCause(cause: SerializedError | SerializedField | undefined): ErrorOptions | undefined {
  if (cause === undefined) return undefined;
  return { cause: isField(cause) ? cause : reviveError(cause) };
}

/** Re-creates a serialized error as an instance of its original class. */
export function reviveError(s: SerializedError): Error {
  const options = reviveCause(s.cause);
  if (s.kind === "DOMException") {
    // DOMException's name is a read-only accessor set by its constructor.
    return new DOMException(s.message, s.name);
  }
  let error: Error;
  if (isLlmKind(s.kind)) {
    const ctor = LLM_ERROR_CLASSES[s.kind];
    // The subclasses' constructors build their messages from parts; run only the base
    // constructor (with the finished message) while `new.target` gives the right prototype.
    const revived: LlmError = Reflect.construct(LlmError, [s.code ?? "UNKNOWN", s.message, options], ctor);
    Object.assign(revived, s.fields);
    error = revived;
  } else {
    const ctor = isBuiltinKind(s.kind) ? BUILTIN_ERRORS[s.kind] : Error;
    error = new ctor(s.message, options);
    Object.assign(error, s.fields);
  }
  error.name = s.name;
  if (s.stack !== undefined) error.stack = s.stack;
  return error;
}
