/**
 * Chat prompts from the model's own Jinja template (`tokenizer.chat_template`), rendered
 * with `@huggingface/jinja`, the same engine Hugging Face's JavaScript libraries use.
 */
import { Template } from "@huggingface/jinja";
import { TokenizerError } from "../errors.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { metadataValue, type TokenizerMetadata } from "./vocab.ts";

/** A tool call an assistant message made, as templates are given it. */
export interface ChatToolCall {
  /** The call's id, which a later `tool` message answers with `toolCallId`. */
  readonly id?: string;
  readonly name: string;
  /** The arguments as JSON text (OpenAI's shape); templates receive them parsed. */
  readonly arguments: string;
}

/** One chat message. */
export interface ChatMessage {
  /** "system", "user", "assistant", "tool", or another role the template knows. */
  readonly role: string;
  readonly content: string;
  /** For an assistant message: the tools it called. */
  readonly toolCalls?: readonly ChatToolCall[];
  /** For a `tool` message: the id of the call it answers. */
  readonly toolCallId?: string;
  /** For a `tool` message: the function's name. */
  readonly name?: string;
}

/** Options of `renderChat`. */
export interface RenderChatOptions {
  /** End with the opening of an assistant turn (default true). */
  readonly addGenerationPrompt?: boolean;
  /**
   * Tools offered to the model, in OpenAI's shape (`{type: "function", function: {name,
   * description, parameters}}`), passed to the template as `tools`. A template that does
   * not show them gets them described in a system message instead (llama.cpp's polyfill).
   */
  readonly tools?: readonly object[];
}

/** What a template shows of tools, found by rendering probes (as llama.cpp's template caps do). */
export interface ChatTemplateCaps {
  /** The `tools` variable reaches the prompt. */
  readonly supportsTools: boolean;
  /** An assistant message's `tool_calls` reach the prompt. */
  readonly supportsToolCalls: boolean;
  /** `role: "tool"` messages render, their content included. */
  readonly supportsToolResponses: boolean;
  /** A `system` message renders (Gemma's templates raise on one). */
  readonly supportsSystemRole: boolean;
}

/** A template with the tokenizer whose BOS/EOS texts it may refer to. */
export interface TokenizerWithTemplate {
  readonly tokenizer: Tokenizer;
  /** The Jinja source; undefined when the model has none. */
  readonly template: string | undefined;
}

/** Where `renderChat` finds the template: a model's metadata, or a tokenizer and template. */
export type ChatTemplateSource = TokenizerMetadata | TokenizerWithTemplate;

const TEMPLATE_KEY = "tokenizer.chat_template";
// Parsed templates by source text: a chat server renders the same one on every request.
const parsedTemplates = new Map<string, Template>();
const MAX_PARSED_TEMPLATES = 16;
const templateCaps = new Map<string, ChatTemplateCaps>();

function isTokenizerWithTemplate(source: ChatTemplateSource): source is TokenizerWithTemplate {
  // GGUF keys are dotted ("tokenizer.ggml.model"), so a bare "tokenizer" key is ours.
  const t = (source as { tokenizer?: unknown }).tokenizer;
  return typeof t === "object" && t !== null && "encode" in t;
}

/**
 * Renders `messages` into the prompt text the model was trained on. Throws
 * `TokenizerError` `NO_CHAT_TEMPLATE` when the model has no template, and
 * `CHAT_TEMPLATE_ERROR` (naming the problem) when the template fails to parse or render.
 */
export function renderChat(source: ChatTemplateSource, messages: readonly ChatMessage[], options: RenderChatOptions = {}): string {
  const { template, bosToken, eosToken } = resolve(source);
  const parsed = parseTemplate(template);
  const tools = options.tools && options.tools.length > 0 ? options.tools : undefined;
  const caps = tools || messages.some(usesTools) ? capsOf(template!, parsed) : undefined;
  const context: Record<string, unknown> = {
    messages: templateMessages(messages, tools, caps),
    add_generation_prompt: options.addGenerationPrompt ?? true,
    bos_token: bosToken,
    eos_token: eosToken,
  };
  if (tools && caps?.supportsTools) context.tools = tools;
  try {
    return parsed.render(context);
  } catch (err) {
    throw new TokenizerError("CHAT_TEMPLATE_ERROR", `${TEMPLATE_KEY} failed to render: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * The model's chat template source (`tokenizer.chat_template`), or undefined when it has
 * none; for callers that pick a tool-call format from the template's markers.
 */
export function chatTemplateOf(source: ChatTemplateSource): string | undefined {
  return resolve(source).template;
}

/** What the model's template shows of tools (probed once per template). */
export function chatTemplateCaps(source: ChatTemplateSource): ChatTemplateCaps {
  const { template } = resolve(source);
  return capsOf(template!, parseTemplate(template));
}

function parseTemplate(template: string | undefined): Template {
  if (template === undefined || template.trim() === "") {
    throw new TokenizerError("NO_CHAT_TEMPLATE", `the model has no ${TEMPLATE_KEY}, so chat messages cannot be rendered`);
  }
  let parsed = parsedTemplates.get(template);
  if (!parsed) {
    try {
      parsed = new Template(template);
    } catch (err) {
      throw new TokenizerError("CHAT_TEMPLATE_ERROR", `${TEMPLATE_KEY} does not parse: ${messageOf(err)}`, { cause: err });
    }
    // Bounded: templates may come from requests, not only from the model file.
    if (parsedTemplates.size >= MAX_PARSED_TEMPLATES) {
      parsedTemplates.clear();
      templateCaps.clear();
    }
    parsedTemplates.set(template, parsed);
  }
  return parsed;
}

function usesTools(m: ChatMessage): boolean {
  return m.role === "tool" || (m.toolCalls !== undefined && m.toolCalls.length > 0);
}

// Names no real prompt contains: a probe's output shows them only if the template did.
const PROBE_TOOL = "probe_tool_7f3a";
const PROBE_CALL = "probe_call_7f3a";
const PROBE_RESPONSE = "probe_response_7f3a";

/**
 * Renders small probe conversations to learn what the template shows, as llama.cpp's
 * template capabilities (common/jinja/caps.cpp) do: a template that never mentions
 * `tools` would otherwise drop them silently.
 */
function capsOf(template: string, parsed: Template): ChatTemplateCaps {
  const known = templateCaps.get(template);
  if (known) return known;
  const shows = (messages: readonly Record<string, unknown>[], needle: string, tools?: object[]): boolean => {
    try {
      const context: Record<string, unknown> = { messages, add_generation_prompt: false, bos_token: "", eos_token: "" };
      if (tools) context.tools = tools;
      return parsed.render(context).includes(needle);
    } catch {
      return false; // a template that raises on the probe does not support it
    }
  };
  const user = { role: "user", content: "Hi" };
  const system = { role: "system", content: PROBE_RESPONSE };
  const tool = { type: "function", function: { name: PROBE_TOOL, description: "", parameters: { type: "object", properties: {} } } };
  const call = { role: "assistant", content: "", tool_calls: [{ id: "call00001", type: "function", function: { name: PROBE_CALL, arguments: {} } }] };
  const response = { role: "tool", content: PROBE_RESPONSE, tool_call_id: "call00001", name: PROBE_CALL };
  const caps: ChatTemplateCaps = {
    supportsTools: shows([user], PROBE_TOOL, [tool]),
    supportsToolCalls: shows([user, call], PROBE_CALL),
    supportsToolResponses: shows([user, call, response], PROBE_RESPONSE),
    supportsSystemRole: shows([system, user], PROBE_RESPONSE),
  };
  templateCaps.set(template, caps);
  return caps;
}

/**
 * Messages as templates take them (`tool_calls` with parsed arguments, `tool_call_id`),
 * with llama.cpp's polyfills where the template cannot show a part: tools described in
 * the system message, calls and tool responses written as JSON content.
 */
function templateMessages(
  messages: readonly ChatMessage[],
  tools: readonly object[] | undefined,
  caps: ChatTemplateCaps | undefined,
): Record<string, unknown>[] {
  const out = messages.map((m) => templateMessage(m, caps));
  if (tools && caps && !caps.supportsTools) {
    addSystem(out, `You can call any of the following tools to satisfy the user's requests: ${JSON.stringify(tools)}`);
  }
  if (caps && !caps.supportsSystemRole) mergeSystemIntoNext(out);
  return out;
}

function templateMessage(m: ChatMessage, caps: ChatTemplateCaps | undefined): Record<string, unknown> {
  if (m.toolCalls && m.toolCalls.length > 0) {
    if (caps?.supportsToolCalls) {
      const toolCalls = m.toolCalls.map((c, i) => ({
        id: c.id ?? `call_${i}`,
        type: "function",
        function: { name: c.name, arguments: parsedArguments(c.arguments) },
      }));
      return { role: m.role, content: m.content, tool_calls: toolCalls };
    }
    const calls = m.toolCalls.map((c) => ({ name: c.name, arguments: parsedArguments(c.arguments), ...(c.id ? { id: c.id } : {}) }));
    const content = JSON.stringify({ tool_calls: calls, ...(m.content ? { content: m.content } : {}) });
    return { role: m.role, content };
  }
  if (m.role === "tool") {
    if (caps?.supportsToolResponses) {
      return { role: "tool", content: m.content, ...(m.toolCallId ? { tool_call_id: m.toolCallId } : {}), ...(m.name ? { name: m.name } : {}) };
    }
    const response = { ...(m.name ? { tool: m.name } : {}), content: m.content, ...(m.toolCallId ? { tool_call_id: m.toolCallId } : {}) };
    return { role: "user", content: JSON.stringify({ tool_response: response }) };
  }
  return { role: m.role, content: m.content };
}

/** Templates write arguments with `tojson` (or iterate them), so they get the object. */
function parsedArguments(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** llama.cpp's workaround for templates without a system role: its text opens the next message. */
function mergeSystemIntoNext(messages: Record<string, unknown>[]): void {
  if (messages[0]?.role !== "system") return;
  const system = messages.shift()!;
  const next = messages[0];
  if (next) next.content = `${system.content as string}\n${next.content as string}`;
}

/** llama.cpp's add_system: appended to the first system message, or a new one in front. */
function addSystem(messages: Record<string, unknown>[], text: string): void {
  const first = messages[0];
  if (first?.role === "system") first.content = `${first.content as string}\n\n${text}`;
  else messages.unshift({ role: "system", content: text });
}

function resolve(source: ChatTemplateSource): { template: string | undefined; bosToken: string; eosToken: string } {
  if (isTokenizerWithTemplate(source)) {
    const { tokenizer, template } = source;
    const text = (id: number | undefined): string => (id === undefined ? "" : tokenizer.tokenText(id));
    return { template, bosToken: text(tokenizer.bos), eosToken: text(tokenizer.eos) };
  }
  const template = metadataValue(source, TEMPLATE_KEY);
  if (template !== undefined && typeof template !== "string") {
    throw new TokenizerError("CHAT_TEMPLATE_ERROR", `${TEMPLATE_KEY} is a ${typeof template}, not a string`);
  }
  return { template, bosToken: tokenTextFromMetadata(source, "bos"), eosToken: tokenTextFromMetadata(source, "eos") };
}

/**
 * The text of BOS or EOS straight from metadata, without building a whole tokenizer;
 * absent ids fall back to llama.cpp's defaults for the vocabulary kind.
 */
function tokenTextFromMetadata(meta: TokenizerMetadata, which: "bos" | "eos"): string {
  const tokens = metadataValue(meta, "tokenizer.ggml.tokens");
  if (!Array.isArray(tokens)) return "";
  const model = metadataValue(meta, "tokenizer.ggml.model");
  const fallback = model === "gpt2" ? 11 : which === "bos" ? 1 : 2;
  const raw = metadataValue(meta, `tokenizer.ggml.${which}_token_id`);
  const id = typeof raw === "number" || typeof raw === "bigint" ? Number(raw) : fallback;
  const text = id >= 0 && id < tokens.length ? tokens[id] : undefined;
  return typeof text === "string" ? text : "";
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
