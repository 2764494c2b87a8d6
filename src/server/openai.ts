/**
 * OpenAI request bodies → engine options, and engine results → OpenAI response bodies.
 * Every field is checked for type and range; a wrong one is a 400 naming it.
 */
import type { ChatMessage, FinishReason, GenerateOptions, GenerationResult } from "../engine/types.ts";
import { MAX_CHOICES } from "../engine/options.ts";
import { badRequest, HttpError } from "./errors.ts";

type Json = Record<string, unknown>;

/** What a completion request asks for, once parsed. */
export interface ParsedCompletionRequest {
  readonly kind: "chat" | "text";
  readonly input: string | ChatMessage[];
  readonly model: string | undefined;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly options: GenerateOptions;
}

function optionalNumber(body: Json, key: string, min: number, max: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw badRequest(key, `must be a number, got ${JSON.stringify(v)}`, "invalid_type");
  }
  if (v < min || v > max) throw badRequest(key, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

function optionalInteger(body: Json, key: string, min: number, max: number): number | undefined {
  const v = optionalNumber(body, key, min, max);
  if (v !== undefined && !Number.isInteger(v)) throw badRequest(key, `must be an integer, got ${v}`, "invalid_type");
  return v;
}

function optionalBoolean(body: Json, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw badRequest(key, `must be a boolean, got ${JSON.stringify(v)}`, "invalid_type");
  return v;
}

function parseStop(body: Json): string[] | undefined {
  const v = body.stop;
  if (v === undefined || v === null) return undefined;
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) {
    throw badRequest("stop", "must be a string or an array of strings", "invalid_type");
  }
  if (list.length > 4) throw badRequest("stop", `at most 4 stop sequences, got ${list.length}`);
  return list as string[];
}

function parseContent(content: unknown, index: number): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part, j) => {
        const p = part as Json;
        if (typeof p !== "object" || p === null || p.type !== "text" || typeof p.text !== "string") {
          throw badRequest(`messages[${index}].content[${j}]`, "only text parts are supported", "invalid_type");
        }
        return p.text;
      })
      .join("");
  }
  throw badRequest(`messages[${index}].content`, "must be a string or an array of text parts", "invalid_type");
}

function parseMessages(body: Json): ChatMessage[] {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    throw badRequest(
      "messages",
      "must be a non-empty array",
      messages === undefined ? "missing_required_parameter" : "invalid_type",
    );
  }
  return messages.map((m, i) => {
    if (typeof m !== "object" || m === null) throw badRequest(`messages[${i}]`, "must be an object", "invalid_type");
    const role = (m as Json).role;
    if (typeof role !== "string" || !["system", "developer", "user", "assistant"].includes(role)) {
      throw badRequest(
        `messages[${i}].role`,
        `must be system, developer, user or assistant, got ${JSON.stringify(role)}`,
      );
    }
    return { role: role === "developer" ? "system" : role, content: parseContent((m as Json).content, i) };
  });
}

function parsePrompt(body: Json): string {
  const p = body.prompt;
  if (typeof p === "string") return p;
  if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string") return p[0];
  if (p === undefined) throw badRequest("prompt", "is required", "missing_required_parameter");
  throw badRequest("prompt", "must be a string (or an array of exactly one string)", "invalid_type");
}

const isEmptyArray = (v: unknown) => Array.isArray(v) && v.length === 0;
const isEmptyObject = (v: unknown) =>
  typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;

/**
 * OpenAI parameters this server does not implement, each with the test for the values
 * that ask for nothing (the default). Any other value is refused with 400, never ignored:
 * a client that asks for tools or log-probabilities must learn it got none.
 */
const UNSUPPORTED_PARAMETERS: ReadonlyArray<readonly [string, (v: unknown) => boolean]> = [
  ["best_of", (v) => v === 1],
  ["logprobs", (v) => v === false],
  ["top_logprobs", (v) => v === 0],
  ["echo", (v) => v === false],
  ["suffix", (v) => v === ""],
  ["logit_bias", isEmptyObject],
  ["response_format", (v) => typeof v === "object" && (v as Json).type === "text"],
  ["tools", isEmptyArray],
  ["tool_choice", (v) => v === "none"],
  ["functions", isEmptyArray],
  ["function_call", (v) => v === "none"],
];

/** Throws a 400 `unsupported_parameter` naming the first parameter asked for that this server lacks. */
function refuseUnsupported(body: Json): void {
  for (const [param, isDefault] of UNSUPPORTED_PARAMETERS) {
    const v = body[param];
    if (v === undefined || v === null || isDefault(v)) continue;
    const shown = JSON.stringify(v);
    const brief = shown.length > 60 ? `${shown.slice(0, 57)}...` : shown;
    throw badRequest(param, `${brief} is not supported by this server`, "unsupported_parameter");
  }
}

/** Parses and checks a `/v1/chat/completions` or `/v1/completions` body. */
export function parseCompletionRequest(kind: "chat" | "text", raw: unknown): ParsedCompletionRequest {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new HttpError(400, "the request body must be a JSON object", { code: "invalid_type" });
  }
  const body = raw as Json;
  const model = body.model;
  if (model !== undefined && typeof model !== "string") throw badRequest("model", "must be a string", "invalid_type");
  refuseUnsupported(body);
  const streamOptions = body.stream_options;
  if (
    streamOptions !== undefined && streamOptions !== null &&
    (typeof streamOptions !== "object" || Array.isArray(streamOptions))
  ) {
    throw badRequest("stream_options", "must be an object", "invalid_type");
  }
  const includeUsage = streamOptions ? optionalBoolean(streamOptions as Json, "include_usage") ?? false : false;
  const maxTokens = optionalInteger(body, "max_completion_tokens", 1, 1 << 30) ??
    optionalInteger(body, "max_tokens", 1, 1 << 30);
  const options: GenerateOptions = {
    maxTokens,
    temperature: optionalNumber(body, "temperature", 0, 2),
    topP: optionalNumber(body, "top_p", Number.MIN_VALUE, 1),
    topK: optionalInteger(body, "top_k", 0, 1 << 30),
    minP: optionalNumber(body, "min_p", 0, 0.999999),
    repeatPenalty: optionalNumber(body, "repeat_penalty", Number.MIN_VALUE, 100),
    presencePenalty: optionalNumber(body, "presence_penalty", -2, 2),
    frequencyPenalty: optionalNumber(body, "frequency_penalty", -2, 2),
    seed: optionalInteger(body, "seed", 0, 2 ** 32 - 1),
    stop: parseStop(body),
    // llama.cpp server's extension, for benchmarks and tests that need a fixed length.
    ignoreEos: optionalBoolean(body, "ignore_eos"),
    // Choices share the prompt's KV pages; each samples from its own seed (see choiceSeed).
    n: optionalInteger(body, "n", 1, MAX_CHOICES),
  };
  return {
    kind,
    input: kind === "chat" ? parseMessages(body) : parsePrompt(body),
    model,
    stream: optionalBoolean(body, "stream") ?? false,
    includeUsage,
    options,
  };
}

/** Identifies one response: `chatcmpl-…` / `cmpl-…`. */
export function completionId(kind: "chat" | "text"): string {
  const hex = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${kind === "chat" ? "chatcmpl" : "cmpl"}-${hex}`;
}

/** OpenAI's usage object; `cached_tokens` counts prompt tokens whose KV pages were reused. */
export function usageJson(r: GenerationResult): Json {
  return {
    prompt_tokens: r.usage.promptTokens,
    completion_tokens: r.usage.completionTokens,
    total_tokens: r.usage.totalTokens,
    prompt_tokens_details: { cached_tokens: r.usage.cachedTokens },
  };
}

/** The non-streaming response body. */
export function completionJson(
  kind: "chat" | "text",
  id: string,
  model: string,
  created: number,
  r: GenerationResult,
): Json {
  const choices = r.choices.map((c) =>
    kind === "chat"
      ? { index: c.index, message: { role: "assistant", content: c.text }, logprobs: null, finish_reason: c.finishReason }
      : { index: c.index, text: c.text, logprobs: null, finish_reason: c.finishReason }
  );
  return {
    id,
    object: kind === "chat" ? "chat.completion" : "text_completion",
    created,
    model,
    choices,
    usage: usageJson(r),
  };
}

/** One streamed chunk's body, for the choice `index`. */
export function chunkJson(
  kind: "chat" | "text",
  id: string,
  model: string,
  created: number,
  delta: { role?: string; text?: string },
  finishReason: FinishReason | null,
  index = 0,
): Json {
  const choice = kind === "chat"
    ? {
      index,
      delta: {
        ...(delta.role ? { role: delta.role } : {}),
        ...(delta.text !== undefined ? { content: delta.text } : {}),
      },
      logprobs: null,
      finish_reason: finishReason,
    }
    : { index, text: delta.text ?? "", logprobs: null, finish_reason: finishReason };
  return {
    id,
    object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
    created,
    model,
    choices: [choice],
  };
}
