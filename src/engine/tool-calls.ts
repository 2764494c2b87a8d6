/**
 * Tool calls: which text format a model writes them in (picked from its chat template's
 * markers, as llama.cpp's common/chat.cpp does), reading them back out of the generated
 * text, and holding that text back from the stream while it may still be a call.
 *
 * Formats: Hermes / Qwen 2.5 / Qwen 3 (`<tool_call>{json}</tool_call>`), Llama 3.x (a bare
 * `{"name", "parameters"}` object, optionally after `<|python_tag|>`), Mistral
 * (`[TOOL_CALLS][{...}]` or `[TOOL_CALLS]name[ARGS]{...}`), Phi-4-mini
 * (`<|tool_call|>[...]<|/tool_call|>`), Gemma 4 (`<|tool_call>call:name{...}<tool_call|>`),
 * and llama.cpp's generic JSON (`{"tool_call": ...}` / `{"response": ...}`) for templates
 * that cannot show tools.
 */
import { gbnfLiteral, jsonSchemaToGbnf } from "../grammar/index.ts";
import { InvalidRequestError } from "./errors.ts";

/** A function the model may call, in OpenAI's shape. */
export interface ToolDefinition {
  readonly type: "function";
  readonly function: {
    /** `[a-zA-Z0-9_-]{1,64}`. */
    readonly name: string;
    readonly description?: string;
    /** A JSON Schema of the arguments object (default: any object). */
    readonly parameters?: Record<string, unknown>;
  };
}

/**
 * Whether and which tool the model must call: `auto` (it decides; the default), `none`
 * (no tools offered), `required` (some call, forced), or one named function (forced).
 */
export type ToolChoice = "auto" | "none" | "required" | { readonly type: "function"; readonly function: { readonly name: string } };

/** A tool call the model made. */
export interface ToolCall {
  /** Unique within the response; a `tool` message answers it with this id. */
  readonly id: string;
  readonly name: string;
  /** The arguments object as JSON text. */
  readonly arguments: string;
}

/** A streamed piece of a tool call, OpenAI's `delta.tool_calls[i]`. */
export interface ToolCallDelta {
  /** Which call of the choice (0, 1, ...): pieces with the same index belong together. */
  readonly index: number;
  /** Set on a call's first piece. */
  readonly id?: string;
  /** Set on a call's first piece. */
  readonly name?: string;
  /** The next piece of the arguments' JSON text. */
  readonly arguments: string;
}

/** The text formats of tool calls. */
export type ToolCallFormat = "generic" | "hermes" | "llama3" | "mistral" | "phi4" | "gemma4";

/**
 * The format a template's model writes calls in, from markers in its text. A template that
 * does not show `tools` (`supportsTools` false) is prompted the generic way, so it is generic.
 */
export function toolCallFormatOf(template: string, supportsTools: boolean): ToolCallFormat {
  if (!supportsTools) return "generic";
  if (template.includes("[TOOL_CALLS]")) return "mistral";
  if (template.includes("<|tool_call>")) return "gemma4";
  if (template.includes("<|tool_call|>")) return "phi4";
  if (template.includes("<tool_call>")) return "hermes";
  if (template.includes("<|python_tag|>") || (template.includes("<|start_header_id|>") && template.includes('"parameters"'))) {
    return "llama3";
  }
  return "generic";
}

/**
 * llama.cpp's instruction for the generic format (common_chat_params_init_generic), added to
 * the system message: the model answers with one JSON object either way.
 */
export const GENERIC_TOOL_INSTRUCTION =
  "Respond in JSON format, either with `tool_call` (a request to call tools) or with `response` reply to the user's request";

/** What a generation's text held: the content meant for the user, and the calls. */
export interface ParsedToolCalls {
  readonly content: string;
  readonly calls: readonly ToolCall[];
}

/** A call's parts before it gets an id. */
interface RawCall {
  readonly name: string;
  readonly arguments: unknown;
  readonly id?: string;
}

/**
 * Reads the tool calls out of a generation's text. Text that is not a well-formed call is
 * content, as it came: a model that meant to answer in words loses nothing.
 */
export function parseToolCalls(format: ToolCallFormat, text: string): ParsedToolCalls {
  const parsed = PARSERS[format](text);
  // No call: the text as it came (only the generic format's `response` unwraps content).
  if (!parsed || (parsed.calls.length === 0 && format !== "generic")) return { content: text, calls: [] };
  if (parsed.calls.length === 0) return { content: parsed.content, calls: [] };
  return { content: parsed.content, calls: parsed.calls.map(withId) };
}

function withId(call: RawCall): ToolCall {
  const args = typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments ?? {});
  return { id: call.id ?? newCallId(), name: call.name, arguments: args };
}

/** `call_` and 24 random alphanumerics, like OpenAI's ids. */
export function newCallId(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return `call_${Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => alphabet[b % alphabet.length]).join("")}`;
}

type Parser = (text: string) => { content: string; calls: RawCall[] } | undefined;

const PARSERS: Record<ToolCallFormat, Parser> = {
  generic: parseGeneric,
  hermes: (text) => parseTagged(text, "<tool_call>", "</tool_call>", callOfObject),
  llama3: parseLlama3,
  mistral: parseMistral,
  phi4: (text) => parseTagged(text, "<|tool_call|>", "<|/tool_call|>", callsOfList),
  gemma4: (text) => parseTagged(text, "<|tool_call>", "<tool_call|>", callOfGemma),
};

/** `{"tool_call": {...}}`, `{"tool_calls": [...]}` or `{"response": ...}`, the whole text. */
function parseGeneric(text: string): { content: string; calls: RawCall[] } | undefined {
  const value = wholeJson(text);
  if (!isObject(value)) return undefined;
  if ("tool_call" in value) {
    const call = callOfObject(value.tool_call);
    return call ? { content: "", calls: call } : undefined;
  }
  if (Array.isArray(value.tool_calls)) {
    const calls = value.tool_calls.map(callOfObject);
    if (calls.some((c) => c === undefined)) return undefined;
    return { content: typeof value.content === "string" ? value.content : "", calls: calls.flat() as RawCall[] };
  }
  if ("response" in value) {
    const r = value.response;
    return { content: typeof r === "string" ? r : JSON.stringify(r), calls: [] };
  }
  return undefined;
}

/** Llama 3.x: the whole answer is `{"name": ..., "parameters": ...}` (`;`-separated for several). */
function parseLlama3(text: string): { content: string; calls: RawCall[] } | undefined {
  let body = text.trim();
  if (body.startsWith("<|python_tag|>")) body = body.slice("<|python_tag|>".length).trim();
  const calls: RawCall[] = [];
  let at = 0;
  while (at < body.length) {
    const read = readJson(body, at);
    const call = read && callOfObject(read.value);
    if (!call) return undefined;
    calls.push(...call);
    at = skipSpace(body, read!.end);
    if (body[at] === ";") at = skipSpace(body, at + 1);
  }
  return calls.length > 0 ? { content: "", calls } : undefined;
}

/** Mistral: `[TOOL_CALLS][{...}, ...]` (Nemo) or `[TOOL_CALLS]name[CALL_ID]id[ARGS]{...}` (Small 3.2, Devstral). */
function parseMistral(text: string): { content: string; calls: RawCall[] } | undefined {
  const marker = "[TOOL_CALLS]";
  const first = text.indexOf(marker);
  if (first < 0) return undefined;
  const calls: RawCall[] = [];
  let at = first;
  while (text.startsWith(marker, at)) {
    at = skipSpace(text, at + marker.length);
    if (text[at] === "[") {
      const read = readJson(text, at);
      const list = read && callsOfList(read.value);
      if (!list) return undefined;
      calls.push(...list);
      at = skipSpace(text, read!.end);
      continue;
    }
    const named = /^([A-Za-z0-9_.-]+)(?:\[CALL_ID\]([A-Za-z0-9]+))?\[ARGS\]/.exec(text.slice(at));
    if (!named) return undefined;
    const read = readJson(text, at + named[0].length);
    if (!read || !isObject(read.value)) return undefined;
    calls.push({ name: named[1]!, arguments: read.value, ...(named[2] ? { id: named[2] } : {}) });
    at = skipSpace(text, read.end);
  }
  return { content: text.slice(0, first) + text.slice(at), calls };
}

/** Calls each between `open` and `close` (the last `close` may be missing); content around them. */
function parseTagged(
  text: string,
  open: string,
  close: string,
  read: (body: unknown) => RawCall[] | undefined,
): { content: string; calls: RawCall[] } | undefined {
  const calls: RawCall[] = [];
  let content = "";
  let at = 0;
  for (let start = text.indexOf(open); start >= 0; start = text.indexOf(open, at)) {
    content += text.slice(at, start);
    const bodyStart = start + open.length;
    const end = text.indexOf(close, bodyStart);
    const body = text.slice(bodyStart, end < 0 ? text.length : end);
    const call = read(open === "<|tool_call>" ? body : wholeJson(body));
    if (!call) return undefined;
    calls.push(...call);
    at = end < 0 ? text.length : end + close.length;
  }
  return { content: (content + text.slice(at)).trim(), calls };
}

/** `{"name", "arguments" | "parameters"}`, or OpenAI's `{"type": "function", "function": {...}}`. */
function callOfObject(value: unknown): RawCall[] | undefined {
  if (!isObject(value)) return undefined;
  const fn = isObject(value.function) ? value.function : value;
  const name = fn.name;
  const args = "arguments" in fn ? fn.arguments : "parameters" in fn ? fn.parameters : {};
  if (typeof name !== "string" || name === "") return undefined;
  if (!isObject(args) && typeof args !== "string") return undefined;
  const id = typeof value.id === "string" ? value.id : undefined;
  return [{ name, arguments: args, ...(id ? { id } : {}) }];
}

function callsOfList(value: unknown): RawCall[] | undefined {
  const list = Array.isArray(value) ? value : [value];
  const calls = list.map(callOfObject);
  return calls.some((c) => c === undefined) || calls.length === 0 ? undefined : (calls.flat() as RawCall[]);
}

/** Gemma 4: `call:name{key:value,...}` with `<|"|>`-quoted strings and bare keys. */
function callOfGemma(body: unknown): RawCall[] | undefined {
  const m = /^call:([A-Za-z0-9_.-]+)(\{[\s\S]*\})\s*$/.exec(String(body).trim());
  if (!m) return undefined;
  const args = wholeJson(gemmaToJson(m[2]!));
  return isObject(args) ? [{ name: m[1]!, arguments: args }] : undefined;
}

/** Gemma's dict syntax as JSON: `<|"|>` strings become JSON strings, bare keys get quotes. */
function gemmaToJson(text: string): string {
  const quote = '<|"|>';
  let out = "";
  let i = 0;
  while (i < text.length) {
    if (text.startsWith(quote, i)) {
      const end = text.indexOf(quote, i + quote.length);
      if (end < 0) return text; // unterminated: let the JSON parse fail
      out += JSON.stringify(text.slice(i + quote.length, end));
      i = end + quote.length;
    } else if (text[i] === '"') {
      const end = jsonStringEnd(text, i);
      out += text.slice(i, end);
      i = end;
    } else {
      const key = /^[A-Za-z_][A-Za-z0-9_]*(?=\s*:)/.exec(text.slice(i));
      const prev = out.trimEnd().at(-1);
      if (key && (prev === "{" || prev === ",")) {
        out += JSON.stringify(key[0]);
        i += key[0].length;
      } else out += text[i++];
    }
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The text as one JSON value (surrounding spaces allowed), or undefined. */
function wholeJson(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  try {
    return JSON.parse(trimmed);
  } catch {
    return undefined;
  }
}

function skipSpace(text: string, at: number): number {
  while (at < text.length && /\s/.test(text[at]!)) at++;
  return at;
}

/** The index just past the JSON string starting at `start` (a `"`). */
function jsonStringEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
  return Math.min(i + 1, text.length);
}

/** The JSON object or array starting at `start` (after spaces), and where it ends. */
function readJson(text: string, start: number): { value: unknown; end: number } | undefined {
  const at = skipSpace(text, start);
  if (text[at] !== "{" && text[at] !== "[") return undefined;
  let depth = 0;
  for (let i = at; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      i = jsonStringEnd(text, i) - 1;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      if (--depth === 0) {
        try {
          return { value: JSON.parse(text.slice(at, i + 1)), end: i + 1 };
        } catch {
          return undefined;
        }
      }
    }
  }
  return undefined;
}

/** Where a call may begin in each format: text from there on is held back from the stream. */
const CALL_MARKERS: Record<ToolCallFormat, readonly string[]> = {
  generic: [],
  hermes: ["<tool_call>"],
  llama3: ["<|python_tag|>"],
  mistral: ["[TOOL_CALLS]"],
  phi4: ["<|tool_call|>"],
  gemma4: ["<|tool_call>"],
};

/** Where a call ends, for formats that mark it: each call is sent as soon as its end arrives. */
const CALL_ENDS: Partial<Record<ToolCallFormat, string>> = {
  hermes: "</tool_call>",
  phi4: "<|/tool_call|>",
  gemma4: "<tool_call|>",
};

/** Formats whose call is the whole answer, a JSON object: an answer starting with `{` is held. */
const WHOLE_ANSWER_FORMATS: ReadonlySet<ToolCallFormat> = new Set(["generic", "llama3"]);

/**
 * Splits a streamed generation into content that can go out now and text held back
 * because it is (or may become) a tool call; `finish` parses what was held. Text is held
 * from a call marker on (or from the start, for formats whose call is the whole answer),
 * and a tail that could be the start of a marker waits for the next piece.
 */
export class ToolCallStream {
  readonly #format: ToolCallFormat;
  #pending = "";
  #holding = false;
  #emitted = false;
  /** Calls completed but not yet taken. */
  #completed: ToolCall[] = [];
  /** Whether a call was completed: spaces between calls are not content. */
  #afterCall = false;

  constructor(format: ToolCallFormat) {
    this.#format = format;
  }

  /**
   * Takes the next piece of text; returns the content that can be streamed now. Calls
   * whose end marker arrived are parsed at once: {@link takeCalls} gives them.
   */
  push(text: string): string {
    this.#pending += text;
    let out = "";
    for (;;) {
      out += this.#release();
      if (!this.#holding || !this.#completeCall()) return out;
    }
  }

  /** The calls completed since the last call of this method. */
  takeCalls(): ToolCall[] {
    return this.#completed.splice(0);
  }

  /** When a held call's end marker has arrived and the call parses: takes it from the text. */
  #completeCall(): boolean {
    const end = CALL_ENDS[this.#format];
    const at = end === undefined ? -1 : this.#pending.indexOf(end);
    if (at < 0) return false;
    const parsed = parseToolCalls(this.#format, this.#pending.slice(0, at + end!.length));
    if (parsed.calls.length === 0 || parsed.content !== "") return false; // left for finish() as text
    this.#completed.push(...parsed.calls);
    this.#pending = this.#pending.slice(at + end!.length);
    this.#holding = false;
    this.#afterCall = true;
    return true;
  }

  /** The content that can go out now; sets holding when a call may have begun. */
  #release(): string {
    if (this.#holding) return "";
    if (this.#afterCall && this.#pending.trim() === "") return "";
    if (!this.#emitted && WHOLE_ANSWER_FORMATS.has(this.#format)) {
      const start = this.#pending.trimStart();
      if (start === "") return "";
      if (start.startsWith("{")) {
        this.#holding = true;
        return "";
      }
    }
    const markers = CALL_MARKERS[this.#format];
    let cut = this.#pending.length;
    for (const m of markers) {
      const found = this.#pending.indexOf(m);
      if (found >= 0 && found < cut) {
        cut = found;
        this.#holding = true;
      }
    }
    if (!this.#holding) cut = this.#pending.length - longestMarkerPrefix(this.#pending, markers);
    const out = this.#pending.slice(0, cut);
    this.#pending = this.#pending.slice(cut);
    if (out.length > 0) this.#emitted = true;
    // Spaces between two calls are not content; text after the last call is.
    if (this.#afterCall && out.trim() === "") {
      this.#pending = out + this.#pending;
      return "";
    }
    return out;
  }

  /** At the end: the held text's content (to stream last) and its calls. */
  finish(): ParsedToolCalls {
    const held = this.#pending;
    this.#pending = "";
    if (held === "" || (this.#afterCall && held.trim() === "")) return { content: "", calls: [] };
    return parseToolCalls(this.#format, held);
  }
}

/** The length of the longest tail of `text` that is a proper prefix of a marker. */
function longestMarkerPrefix(text: string, markers: readonly string[]): number {
  let best = 0;
  for (const m of markers) {
    for (let n = Math.min(m.length - 1, text.length); n > best; n--) {
      if (text.endsWith(m.slice(0, n))) {
        best = n;
        break;
      }
    }
  }
  return best;
}

/**
 * The calls as stream deltas, OpenAI's way: a call's first piece carries its id and name
 * (empty arguments), the next its arguments.
 */
export function toolCallDeltas(calls: readonly ToolCall[]): ToolCallDelta[] {
  return calls.flatMap((c, index) => [{ index, id: c.id, name: c.name, arguments: "" }, { index, arguments: c.arguments }]);
}

const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * Checks tools and a tool choice for shape (OpenAI's rules); throws InvalidRequestError
 * naming the field (`tools[1].function.name`, `toolChoice`). `prefix` names the fields the
 * caller's way (the server says `tool_choice`).
 */
export function checkTools(tools: unknown, choice: unknown, names = { tools: "tools", toolChoice: "toolChoice" }): void {
  if (tools !== undefined) {
    if (!Array.isArray(tools)) throw new InvalidRequestError(names.tools, "must be an array of tools");
    tools.forEach((tool: unknown, i) => checkTool(tool, `${names.tools}[${i}]`));
    const seen = new Set<string>();
    for (const [i, t] of (tools as ToolDefinition[]).entries()) {
      if (seen.has(t.function.name)) throw new InvalidRequestError(`${names.tools}[${i}].function.name`, `"${t.function.name}" is defined twice`);
      seen.add(t.function.name);
    }
  }
  if (choice === undefined) return;
  if (choice === "auto" || choice === "none") return;
  const list = (tools ?? []) as ToolDefinition[];
  if (choice === "required") {
    if (list.length === 0) throw new InvalidRequestError(names.toolChoice, `"required" needs at least one tool in ${names.tools}`);
    return;
  }
  const fn = isObject(choice) && choice.type === "function" && isObject(choice.function) ? choice.function.name : undefined;
  if (typeof fn !== "string") {
    throw new InvalidRequestError(names.toolChoice, 'must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}');
  }
  if (!list.some((t) => t.function.name === fn)) {
    throw new InvalidRequestError(`${names.toolChoice}.function.name`, `"${fn}" is not among the tools`);
  }
}

function checkTool(tool: unknown, at: string): void {
  if (!isObject(tool)) throw new InvalidRequestError(at, "must be an object");
  if (tool.type !== "function") throw new InvalidRequestError(`${at}.type`, `must be "function", got ${JSON.stringify(tool.type)}`);
  const fn = tool.function;
  if (!isObject(fn)) throw new InvalidRequestError(`${at}.function`, "must be an object");
  if (typeof fn.name !== "string" || !FUNCTION_NAME.test(fn.name)) {
    throw new InvalidRequestError(`${at}.function.name`, `must be 1 to 64 letters, digits, _ or -, got ${JSON.stringify(fn.name)}`);
  }
  if (fn.description !== undefined && typeof fn.description !== "string") {
    throw new InvalidRequestError(`${at}.function.description`, "must be a string");
  }
  if (fn.parameters !== undefined && !isObject(fn.parameters)) {
    throw new InvalidRequestError(`${at}.function.parameters`, "must be a JSON Schema object");
  }
}

/** How a request's tools are offered and read back. */
export interface ToolSetup {
  /** The tools offered in the prompt. */
  readonly tools: readonly ToolDefinition[];
  readonly format: ToolCallFormat;
  /** The tools a call is forced among (`required`: all; a named one: it), or none. */
  readonly forced: readonly ToolDefinition[];
}

/**
 * The request's tool set-up, or undefined when it offers none (no tools, or `none`).
 * `template` and `supportsTools` pick the format ({@link toolCallFormatOf}).
 */
export function toolSetupOf(
  options: { readonly tools?: readonly ToolDefinition[]; readonly toolChoice?: ToolChoice },
  template: string,
  supportsTools: boolean,
): ToolSetup | undefined {
  checkTools(options.tools, options.toolChoice);
  const tools = options.tools ?? [];
  const choice = options.toolChoice ?? "auto";
  if (tools.length === 0 || choice === "none") return undefined;
  const forced = choice === "required" ? tools : typeof choice === "object" ? tools.filter((t) => t.function.name === choice.function.name) : [];
  return { tools, format: toolCallFormatOf(template, supportsTools), forced };
}

/**
 * `options` with the grammar of a forced call (`required` or a named function) as its
 * `grammar`; unchanged when no call is forced. A forced call with its own `grammar` or
 * `jsonSchema` is refused: only one grammar can constrain the output.
 */
export function withForcedToolCall<O extends { readonly grammar?: string; readonly jsonSchema?: unknown }>(
  options: O,
  setup: ToolSetup | undefined,
): O {
  if (!setup || setup.forced.length === 0) return options;
  if (options.grammar !== undefined || options.jsonSchema !== undefined) {
    throw new InvalidRequestError("toolChoice", "a forced tool call (required or a named function) cannot be combined with grammar or jsonSchema");
  }
  return { ...options, grammar: forcedToolCallGrammar(setup) };
}

/** The literal text around a forced call, per format (the call object between). */
const CALL_WRAPPERS: Record<ToolCallFormat, readonly [string, string]> = {
  generic: ['{"tool_call": ', "}"],
  hermes: ["<tool_call>\n", "\n</tool_call>"],
  llama3: ["", ""],
  mistral: ["[TOOL_CALLS][", "]"],
  phi4: ["<|tool_call|>[", "]<|/tool_call|>"],
  gemma4: ["<|tool_call>", "<tool_call|>"],
};

/**
 * The GBNF grammar of one forced call among `setup.forced`, in the format's own text: its
 * wrapper around `{"name": "<fn>", "arguments": <the function's parameters schema>}`
 * (Llama 3.x says `parameters`; Gemma 4 writes `call:<fn>` before the arguments). Each
 * function's arguments grammar comes from `jsonSchemaToGbnf` with its rules renamed
 * apart; `required` alternates over the functions. A parameters schema the converter
 * cannot enforce throws its `UnsupportedSchemaError` naming the keyword.
 */
export function forcedToolCallGrammar(setup: ToolSetup): string {
  const [open, close] = CALL_WRAPPERS[setup.format];
  const rules: string[] = [];
  const alternatives = setup.forced.map((tool, i) => {
    const name = tool.function.name;
    const args = renameRules(jsonSchemaToGbnf(tool.function.parameters ?? { type: "object" }, { whitespace: "compact" }), `t${i}-`);
    rules.push(args);
    if (setup.format === "gemma4") return `${gbnfLiteral(`call:${name}`)} t${i}-root`;
    const key = setup.format === "llama3" ? "parameters" : "arguments";
    return `${gbnfLiteral(`{"name": ${JSON.stringify(name)}, "${key}": `)} t${i}-root ${gbnfLiteral("}")}`;
  });
  const root = `root ::= ${open ? `${gbnfLiteral(open)} ` : ""}(${alternatives.join(" | ")})${close ? ` ${gbnfLiteral(close)}` : ""}`;
  return [root, ...rules].join("\n");
}

/**
 * `gbnf` with every rule name prefixed, references included; quoted literals and
 * character classes are left as they are.
 */
export function renameRules(gbnf: string, prefix: string): string {
  const names = new Set([...gbnf.matchAll(/^([a-zA-Z0-9_-]+)\s*::=/gm)].map((m) => m[1]!));
  let out = "";
  let i = 0;
  while (i < gbnf.length) {
    const c = gbnf[i]!;
    if (c === '"' || c === "[") {
      const end = literalEnd(gbnf, i, c === '"' ? '"' : "]");
      out += gbnf.slice(i, end);
      i = end;
    } else if (c === "#") {
      const end = gbnf.indexOf("\n", i);
      i = end < 0 ? gbnf.length : end;
    } else if (/[a-zA-Z0-9_-]/.test(c)) {
      let end = i;
      while (end < gbnf.length && /[a-zA-Z0-9_-]/.test(gbnf[end]!)) end++;
      const word = gbnf.slice(i, end);
      out += names.has(word) ? prefix + word : word;
      i = end;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Just past the `"…"` literal or `[…]` class starting at `start` (backslash escapes skipped). */
function literalEnd(text: string, start: number, closing: string): number {
  let i = start + 1;
  while (i < text.length && text[i] !== closing) i += text[i] === "\\" ? 2 : 1;
  return Math.min(i + 1, text.length);
}
