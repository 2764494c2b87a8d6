/**
 * Errors through serialize → structured clone → revive: the class (so `instanceof`), name,
 * code, message, fields and cause chain must come back as they were thrown.
 */
import { describe, expect, test } from "vitest";
import { EngineDisposedError, EngineFailedError, InvalidRequestError, RequestAbortedError } from "../../../src/engine/errors.ts";
import {
  GGUFError,
  GpuError,
  InvalidArgumentError,
  LlmError,
  ModelConfigError,
  SourceError,
  TokenizerError,
  UnsupportedTensorTypeError,
} from "../../../src/errors.ts";
import { reviveError, serializeError } from "../../../src/worker/errors.ts";

/** The trip an error makes: serialized, structured-cloned as postMessage does, revived. */
function roundTrip(error: unknown): Error {
  return reviveError(structuredClone(serializeError(error)));
}

const CASES: [string, Error, new (...args: never[]) => Error, Record<string, unknown>][] = [
  ["GGUFError", new GGUFError("GGUF_TRUNCATED", "ends early", { file: "m.gguf", offset: 24, field: "general.name" }), GGUFError,
    { code: "GGUF_TRUNCATED", file: "m.gguf", offset: 24, field: "general.name" }],
  ["UnsupportedTensorTypeError", new UnsupportedTensorTypeError("blk.0.attn_q.weight", "IQ2_XS", "m.gguf"), UnsupportedTensorTypeError,
    { code: "UNSUPPORTED_TENSOR_TYPE", field: "blk.0.attn_q.weight", file: "m.gguf" }],
  ["ModelConfigError", new ModelConfigError("llama.block_count", "missing"), ModelConfigError, { key: "llama.block_count" }],
  ["SourceError", new SourceError("HTTP_STATUS", "https://x/m.gguf", "HTTP 404", 404), SourceError,
    { code: "HTTP_STATUS", source: "https://x/m.gguf", status: 404 }],
  ["TokenizerError", new TokenizerError("NO_CHAT_TEMPLATE", "no template"), TokenizerError, { code: "NO_CHAT_TEMPLATE" }],
  ["InvalidArgumentError", new InvalidArgumentError("--quant", "bad"), InvalidArgumentError, { param: "--quant" }],
  ["GpuError", new GpuError("LIMIT_TOO_LOW", "too small", { limit: "maxBufferSize", needed: 300, available: 256, label: "token_embd" }),
    GpuError, { code: "LIMIT_TOO_LOW", limit: "maxBufferSize", needed: 300, available: 256, label: "token_embd" }],
  ["EngineDisposedError", new EngineDisposedError(), EngineDisposedError, { code: "ENGINE_DISPOSED" }],
  ["RequestAbortedError", new RequestAbortedError(), RequestAbortedError, { code: "ABORTED" }],
  ["InvalidRequestError", new InvalidRequestError("prompt", "too long", "PROMPT_TOO_LONG"), InvalidRequestError,
    { code: "PROMPT_TOO_LONG", param: "prompt" }],
  ["LlmError", new LlmError("SOMETHING", "base class"), LlmError, { code: "SOMETHING" }],
];

describe("errors across a worker boundary", () => {
  test.each(CASES)("%s comes back as its class with its fields", (name, error, ctor, fields) => {
    const back = roundTrip(error);
    expect(back).toBeInstanceOf(ctor);
    expect(back).toBeInstanceOf(LlmError);
    expect(back).toBeInstanceOf(Error);
    expect(back.name).toBe(name);
    expect(back.message).toBe(error.message);
    expect(back).toMatchObject(fields);
    expect(back.stack).toBe(error.stack);
  });

  test("a subclass is not revived as its parent, nor a parent as a subclass", () => {
    expect(roundTrip(new UnsupportedTensorTypeError("t", "IQ1_S"))).toBeInstanceOf(UnsupportedTensorTypeError);
    expect(roundTrip(new GGUFError("X", "y"))).not.toBeInstanceOf(UnsupportedTensorTypeError);
  });

  test("the cause chain survives", () => {
    const gpu = new GpuError("DEVICE_LOST", "the device was lost");
    const failed = roundTrip(new EngineFailedError(gpu.message, { cause: gpu }));
    expect(failed).toBeInstanceOf(EngineFailedError);
    expect(failed.cause).toBeInstanceOf(GpuError);
    expect(failed.cause).toMatchObject({ code: "DEVICE_LOST", name: "GpuError" });
    const aborted = roundTrip(new RequestAbortedError("user pressed stop"));
    expect(aborted.cause).toBe("user pressed stop");
  });

  test("a renamed (minified) class still crosses under its true name", () => {
    const error = new SourceError("NOT_FOUND", "m.gguf", "no such file");
    error.name = "e"; // what a minifier without keepNames leaves in `new.target.name`
    const back = roundTrip(error);
    expect(back).toBeInstanceOf(SourceError);
    expect(back.name).toBe("SourceError");
  });

  test("built-in errors, DOMExceptions and thrown non-errors", () => {
    const type = roundTrip(new TypeError("not a function"));
    expect(type).toBeInstanceOf(TypeError);
    expect(type.message).toBe("not a function");
    const abort = roundTrip(new DOMException("stopped", "AbortError"));
    expect(abort).toBeInstanceOf(DOMException);
    expect(abort.name).toBe("AbortError");
    const text = roundTrip("plain string");
    expect(text).toBeInstanceOf(Error);
    expect(text.message).toBe("plain string");
    expect(roundTrip(42).message).toContain("42");
  });

  test("a cyclic cause does not hang", () => {
    const a = new LlmError("A", "a");
    const b = new LlmError("B", "b", { cause: a });
    Object.defineProperty(a, "cause", { value: b });
    let depth = 0;
    let e: unknown = roundTrip(a);
    while (e instanceof Error) {
      depth++;
      e = e.cause;
    }
    expect(depth).toBeLessThanOrEqual(6);
  });
});
