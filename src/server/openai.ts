/**
 * OpenAI request bodies → engine options, and engine results → OpenAI response bodies.
 * Every field is checked for type and range; a wrong one is a 400 naming it.
 */
import type { ChatMessage, FinishReason, GenerateOptions, GenerationResult, TokenLogprob, ToolCallDelta } from "../engine/types.ts";
import { checkTools, type ToolChoice, type ToolDefinition } from "../engine/tool-calls.ts";
import { MAX_CHOICES } from "../engine/options.ts";
import { MAX_TOP_LOGPROBS } from "../model/runner.ts";
import { badRequest, HttpError } from "./errors.ts";
import { GrammarError, JSON_OBJECT_SCHEMA, type JsonSchema, jsonSchemaToGbnf, parseGbnf } from "../grammar/index.ts";

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
    if (typeof role !== "string" || !["system", "developer", "user", "assistant", "tool"].includes(role)) {
      throw badRequest(
        `messages[${i}].role`,
        `must be system, developer, user, assistant or tool, got ${JSON.stringify(role)}`,
      );
    }
    if (role === "tool") return parseToolMessage(m as Json, i);
    const toolCalls = role === "assistant" ? parseToolCalls((m as Json).tool_calls, i) : undefined;
    // An assistant message that only called tools has null (or no) content.
    const content = toolCalls && ((m as Json).content ?? null) === null ? "" : parseContent((m as Json).content, i);
    return { role: role === "developer" ? "system" : role, content, ...(toolCalls ? { toolCalls } : {}) };
  });
}

/** A `role: "tool"` message: the answer to the call `tool_call_id`. */
function parseToolMessage(m: Json, i: number): ChatMessage {
  const id = m.tool_call_id;
  if (typeof id !== "string" || id === "") {
    throw badRequest(`messages[${i}].tool_call_id`, "must be the id of the tool call this message answers", id === undefined ? "missing_required_parameter" : "invalid_type");
  }
  const name = m.name;
  if (name !== undefined && typeof name !== "string") throw badRequest(`messages[${i}].name`, "must be a string", "invalid_type");
  return { role: "tool", content: parseContent(m.content, i), toolCallId: id, ...(name ? { name } : {}) };
}

/** An assistant message's `tool_calls` (undefined when absent or empty). */
function parseToolCalls(raw: unknown, i: number): ChatMessage["toolCalls"] {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) throw badRequest(`messages[${i}].tool_calls`, "must be an array", "invalid_type");
  if (raw.length === 0) return undefined;
  return raw.map((c: unknown, j) => {
    const at = `messages[${i}].tool_calls[${j}]`;
    const call = c as Json;
    if (typeof c !== "object" || c === null) throw badRequest(at, "must be an object", "invalid_type");
    if (call.type !== undefined && call.type !== "function") throw badRequest(`${at}.type`, 'must be "function"');
    const fn = call.function as Json;
    if (typeof fn !== "object" || fn === null) throw badRequest(`${at}.function`, "must be an object", "invalid_type");
    if (typeof fn.name !== "string" || fn.name === "") throw badRequest(`${at}.function.name`, "must be a non-empty string", "invalid_type");
    if (typeof fn.arguments !== "string") throw badRequest(`${at}.function.arguments`, "must be a string of JSON", "invalid_type");
    if (call.id !== undefined && typeof call.id !== "string") throw badRequest(`${at}.id`, "must be a string", "invalid_type");
    return { name: fn.name, arguments: fn.arguments, ...(typeof call.id === "string" ? { id: call.id } : {}) };
  });
}

/** `tools` and `tool_choice` of a chat request, checked (400 naming the field). */
function parseToolOptions(body: Json): { tools?: ToolDefinition[]; toolChoice?: ToolChoice } {
  const tools = body.tools ?? undefined;
  const toolChoice = body.tool_choice ?? undefined;
  checkTools(tools, toolChoice, { tools: "tools", toolChoice: "tool_choice" });
  return {
    ...(tools !== undefined ? { tools: tools as ToolDefinition[] } : {}),
    ...(toolChoice !== undefined ? { toolChoice: toolChoice as ToolChoice } : {}),
  };
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
  ["echo", (v) => v === false],
  ["suffix", (v) => v === ""],
  ["logit_bias", isEmptyObject],
  ["tools", isEmptyArray],
  ["tool_choice", (v) => v === "none"],
  ["functions", isEmptyArray],
  ["function_call", (v) => v === "none"],
];

/** Supported for chat completions (tools are rendered through the chat template); refused for text. */
const CHAT_TOOL_PARAMETERS = new Set(["tools", "tool_choice"]);

/** Throws a 400 `unsupported_parameter` naming the first parameter asked for that this server lacks. */
function refuseUnsupported(body: Json, kind: "chat" | "text"): void {
  for (const [param, isDefault] of UNSUPPORTED_PARAMETERS) {
    if (kind === "chat" && CHAT_TOOL_PARAMETERS.has(param)) continue;
    const v = body[param];
    if (v === undefined || v === null || isDefault(v)) continue;
    const shown = JSON.stringify(v);
    const brief = shown.length > 60 ? `${shown.slice(0, 57)}...` : shown;
    throw badRequest(param, `${brief} is not supported by this server`, "unsupported_parameter");
  }
}

/**
 * `logprobs` and `top_logprobs`. Chat: `logprobs` a boolean, `top_logprobs` 0–20 (it needs
 * `logprobs: true`). Completions (legacy): `logprobs` the number of alternatives, 0–20
 * (OpenAI allows 5; llama.cpp, like us, 20). They are ln p under the model's raw logits.
 */
function parseLogprobs(kind: "chat" | "text", body: Json): Pick<GenerateOptions, "logprobs" | "topLogprobs"> {
  if (kind === "text") {
    const n = optionalInteger(body, "logprobs", 0, MAX_TOP_LOGPROBS);
    return n === undefined ? {} : { logprobs: true, topLogprobs: n };
  }
  const logprobs = optionalBoolean(body, "logprobs");
  const topLogprobs = optionalInteger(body, "top_logprobs", 0, MAX_TOP_LOGPROBS);
  if (topLogprobs !== undefined && topLogprobs > 0 && logprobs !== true) {
    throw badRequest("top_logprobs", "needs logprobs: true");
  }
  return logprobs ? { logprobs, topLogprobs } : {};
}

/** Parses and checks a `/v1/chat/completions` or `/v1/completions` body. */
export function parseCompletionRequest(kind: "chat" | "text", raw: unknown): ParsedCompletionRequest {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new HttpError(400, "the request body must be a JSON object", { code: "invalid_type" });
  }
  const body = raw as Json;
  const model = body.model;
  if (model !== undefined && typeof model !== "string") throw badRequest("model", "must be a string", "invalid_type");
  refuseUnsupported(body, kind);
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
    ...parseLogprobs(kind, body),
    ...parseConstraint(body),
    ...(kind === "chat" ? parseToolOptions(body) : {}),
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
      ? { index: c.index, message: chatMessageJson(c.text, c.toolCalls), logprobs: logprobsJson(kind, c.logprobs), finish_reason: c.finishReason }
      : { index: c.index, text: c.text, logprobs: logprobsJson(kind, c.logprobs), finish_reason: c.finishReason }
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

/** The assistant's message: its content (null when it only called tools) and `tool_calls`. */
function chatMessageJson(text: string, toolCalls: GenerationResult["toolCalls"]): Json {
  if (!toolCalls || toolCalls.length === 0) return { role: "assistant", content: text };
  return {
    role: "assistant",
    content: text === "" ? null : text,
    tool_calls: toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })),
  };
}

/** OpenAI's `delta.tool_calls` entries: id, type and name only on a call's first piece. */
function toolCallDeltasJson(deltas: readonly ToolCallDelta[]): Json[] {
  return deltas.map((d) => ({
    index: d.index,
    ...(d.id !== undefined ? { id: d.id, type: "function" } : {}),
    function: { ...(d.name !== undefined ? { name: d.name } : {}), arguments: d.arguments },
  }));
}

/** One streamed chunk's body, for the choice `index`. */
export function chunkJson(
  kind: "chat" | "text",
  id: string,
  model: string,
  created: number,
  delta: { role?: string; text?: string; toolCalls?: readonly ToolCallDelta[]; logprobs?: readonly TokenLogprob[]; textOffset?: number },
  finishReason: FinishReason | null,
  index = 0,
): Json {
  const logprobs = logprobsJson(kind, delta.logprobs, delta.textOffset);
  const choice = kind === "chat"
    ? {
      index,
      delta: {
        ...(delta.role ? { role: delta.role } : {}),
        ...(delta.text !== undefined ? { content: delta.text } : {}),
        ...(delta.toolCalls ? { tool_calls: toolCallDeltasJson(delta.toolCalls) } : {}),
      },
      logprobs,
      finish_reason: finishReason,
    }
    : { index, text: delta.text ?? "", logprobs, finish_reason: finishReason };
  return {
    id,
    object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
    created,
    model,
    choices: [choice],
  };
}

/**
 * OpenAI's logprobs object (null without logprobs). Chat: `{content: [{token, logprob,
 * bytes, top_logprobs: [{token, logprob, bytes}]}]}`. Completions: `{tokens,
 * token_logprobs, top_logprobs: [{piece: logprob}], text_offset}`, the offsets counted in
 * UTF-16 units from `textOffset` (the completion's text before these tokens).
 */
export function logprobsJson(kind: "chat" | "text", logprobs: readonly TokenLogprob[] | undefined, textOffset = 0): Json | null {
  if (!logprobs) return null;
  if (kind === "chat") {
    const entry = (c: { text: string; logprob: number; bytes: readonly number[] }) => ({ token: c.text, logprob: c.logprob, bytes: [...c.bytes] });
    return { content: logprobs.map((l) => ({ ...entry(l), top_logprobs: l.top.map(entry) })), refusal: null };
  }
  let offset = textOffset;
  const textOffsets = logprobs.map((l) => {
    const at = offset;
    offset += l.text.length;
    return at;
  });
  return {
    tokens: logprobs.map((l) => l.text),
    token_logprobs: logprobs.map((l) => l.logprob),
    top_logprobs: logprobs.map((l) => Object.fromEntries(l.top.map((c) => [c.text, c.logprob]))),
    text_offset: textOffsets,
  };
}

/**
 * `response_format` (OpenAI: text, json_object = any JSON object, json_schema with
 * `json_schema.schema`) and llama.cpp's `grammar` (GBNF) and `json_schema` extensions, as
 * the engine's `grammar` / `jsonSchema`. Checked here so that a bad grammar or a schema
 * keyword that cannot be enforced is a 400 naming it, before any token is generated.
 */
function parseConstraint(body: Json): Pick<GenerateOptions, "grammar" | "jsonSchema"> {
  const asked: { param: string; options: Pick<GenerateOptions, "grammar" | "jsonSchema"> }[] = [];
  const format = body.response_format;
  if (format !== undefined && format !== null) {
    const f = format as Json;
    if (typeof format !== "object" || Array.isArray(format)) throw badRequest("response_format", "must be an object", "invalid_type");
    if (f.type === "json_object") asked.push({ param: "response_format", options: { jsonSchema: JSON_OBJECT_SCHEMA } });
    else if (f.type === "json_schema") {
      const js = f.json_schema as Json | undefined;
      if (typeof js !== "object" || js === null) throw badRequest("response_format.json_schema", "is required for type json_schema", "missing_required_parameter");
      asked.push({ param: "response_format.json_schema.schema", options: { jsonSchema: (js.schema ?? true) as JsonSchema } });
    } else if (f.type !== "text") throw badRequest("response_format.type", 'must be "text", "json_object" or "json_schema"');
  }
  if (body.json_schema !== undefined && body.json_schema !== null) asked.push({ param: "json_schema", options: { jsonSchema: body.json_schema as JsonSchema } });
  if (typeof body.grammar === "string" && body.grammar !== "") asked.push({ param: "grammar", options: { grammar: body.grammar } });
  else if (body.grammar !== undefined && body.grammar !== null && body.grammar !== "") throw badRequest("grammar", "must be a GBNF string", "invalid_type");
  if (asked.length === 0) return {};
  if (asked.length > 1) throw badRequest(asked[1]!.param, `cannot be combined with ${asked[0]!.param}`);
  const { param, options } = asked[0]!;
  try {
    parseGbnf(options.grammar ?? jsonSchemaToGbnf(options.jsonSchema!));
  } catch (e) {
    if (e instanceof GrammarError) throw badRequest(param, e.message);
    throw e;
  }
  return options;
}
