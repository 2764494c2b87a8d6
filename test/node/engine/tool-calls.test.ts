/**
 * Tool calls (src/engine/tool-calls.ts) and their rendering (src/tokenizer/chat.ts). The
 * model outputs and the calls expected from them are llama.cpp's own test cases
 * (tests/test-chat.cpp: Hermes 2 Pro, Qwen 2.5, Mistral Nemo / Small 3.2 / Devstral,
 * Gemma 4), or what a model's own template writes for a call (Llama 3.2, Qwen 2.5,
 * Mistral Nemo in test/fixtures/chat-templates, copied from llama.cpp's models/templates):
 * rendering a call with the template and parsing the text back must give the same call.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  forcedToolCallGrammar,
  parseToolCalls,
  renameRules,
  toolCallFormatOf,
  type ToolCallFormat,
  ToolCallStream,
  type ToolDefinition,
} from "../../../src/engine/tool-calls.ts";
import { TokenGrammar } from "../../../src/grammar/index.ts";
import { chatTemplateCaps, renderChat } from "../../../src/tokenizer/chat.ts";
import { syntheticTokenizerMetadata } from "../../../src/tokenizer/synthetic.ts";
import { tokenizerFromMetadata } from "../../../src/tokenizer/tokenizer.ts";

const tokenizer = tokenizerFromMetadata(Object.fromEntries(syntheticTokenizerMetadata("llama", 512, {})));
const template = (name: string) => readFileSync(new URL(`../../fixtures/chat-templates/${name}`, import.meta.url), "utf8");
const TEMPLATES = {
  qwen25: "Qwen-Qwen2.5-7B-Instruct.jinja",
  llama32: "meta-llama-Llama-3.2-3B-Instruct.jinja",
  mistralNemo: "mistralai-Mistral-Nemo-Instruct-2407.jinja",
  gemma2: "google-gemma-2-2b-it.jinja",
};

/** The calls as (name, parsed arguments, id when the text gave one). */
function calls(format: ToolCallFormat, text: string) {
  const parsed = parseToolCalls(format, text);
  return {
    content: parsed.content,
    calls: parsed.calls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) as unknown, id: c.id })),
  };
}

const ANY_ID = expect.stringMatching(/^call_[A-Za-z0-9]{24}$/);

describe("parseToolCalls on llama.cpp's test outputs", () => {
  it("Hermes / Qwen 2.5: <tool_call> JSON, with content before it", () => {
    expect(calls("hermes", '<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}</tool_call>')).toEqual({
      content: "",
      calls: [{ name: "special_function", arguments: { arg1: 1 }, id: ANY_ID }],
    });
    expect(calls("hermes", 'Hello, world!\nWhat\'s up?<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}</tool_call>'))
      .toEqual({ content: "Hello, world!\nWhat's up?", calls: [{ name: "special_function", arguments: { arg1: 1 }, id: ANY_ID }] });
    expect(calls("hermes", '<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</tool_call>').calls)
      .toHaveLength(1);
    expect(calls("hermes", "Hello, world!\nWhat's up?")).toEqual({ content: "Hello, world!\nWhat's up?", calls: [] });
    // Text without a call keeps its spaces: it may be the end of a streamed answer.
    expect(calls("hermes", "  two spaces around  ")).toEqual({ content: "  two spaces around  ", calls: [] });
  });

  it("Mistral: a JSON list (Nemo) and name[CALL_ID]id[ARGS] (Small 3.2, Devstral, Ministral)", () => {
    expect(calls("mistral", '[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}, "id": "123456789"}]').calls)
      .toEqual([{ name: "special_function", arguments: { arg1: 1 }, id: "123456789" }]);
    expect(calls("mistral", '[TOOL_CALLS]special_function[CALL_ID]000000001[ARGS]{"arg1": 1}' +
      '[TOOL_CALLS]special_function_with_opt[CALL_ID]000000002[ARGS]{"arg1": 1, "arg2": 2}').calls).toEqual([
        { name: "special_function", arguments: { arg1: 1 }, id: "000000001" },
        { name: "special_function_with_opt", arguments: { arg1: 1, arg2: 2 }, id: "000000002" },
      ]);
    expect(calls("mistral", 'Hello, world!\nWhat\'s up?[TOOL_CALLS]special_function[ARGS]{"arg1": 1}')).toEqual({
      content: "Hello, world!\nWhat's up?",
      calls: [{ name: "special_function", arguments: { arg1: 1 }, id: ANY_ID }],
    });
    expect(calls("mistral", '[TOOL_CALLS]special_function[ARGS]{"arg1":1}').calls).toHaveLength(1);
  });

  it("Gemma 4: call:name{...} with <|\"|> strings, numbers, booleans, null, lists and nested dicts", () => {
    const cases: [string, unknown][] = [
      ['<|tool_call>call:get_time{city:<|"|>San Francisco<|"|>}<tool_call|>', { city: "San Francisco" }],
      ["<|tool_call>call:empty_args{}<tool_call|>", {}],
      ["<|tool_call>call:special_function{arg1:-7}<tool_call|>", { arg1: -7 }],
      ["<|tool_call>call:amount{orig:1.5e10}<tool_call|>", { orig: 1.5e10 }],
      ["<|tool_call>call:toggle{enabled:false}<tool_call|>", { enabled: false }],
      ["<|tool_call>call:set_nullable{value:null}<tool_call|>", { value: null }],
      ['<|tool_call>call:todo_list{todos:[<|"|>buy milk<|"|>,<|"|>walk dog<|"|>]}<tool_call|>', { todos: ["buy milk", "walk dog"] }],
      ['<|tool_call>call:set_config{config:{theme:<|"|>dark<|"|>,count:3}}<tool_call|>', { config: { theme: "dark", count: 3 } }],
    ];
    for (const [text, args] of cases) expect(calls("gemma4", text).calls.map((c) => c.arguments)).toEqual([args]);
    expect(calls("gemma4", 'Hello, world!\nWhat\'s up?<|tool_call>call:get_time{city:<|"|>Paris<|"|>}<tool_call|>')).toEqual({
      content: "Hello, world!\nWhat's up?",
      calls: [{ name: "get_time", arguments: { city: "Paris" }, id: ANY_ID }],
    });
    expect(calls("gemma4", '<|tool_call>call:get_time{city:<|"|>London<|"|>}<tool_call|>' +
      '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>').calls.map((c) => c.name)).toEqual(["get_time", "get_weather"]);
  });

  it("Phi-4-mini style: <|tool_call|>[...] (llama.cpp's test-chat-template output)", () => {
    expect(calls("phi4", '<|tool_call|>[{"name": "get_weather", "arguments": {"location": "NYC"}}]<|/tool_call|>').calls)
      .toEqual([{ name: "get_weather", arguments: { location: "NYC" }, id: ANY_ID }]);
  });

  it("generic: tool_call, tool_calls and response objects (the keys GENERIC_TOOL_INSTRUCTION asks for)", () => {
    expect(calls("generic", '{"tool_call": {"name": "special_function", "arguments": {"arg1": 1}}}').calls)
      .toEqual([{ name: "special_function", arguments: { arg1: 1 }, id: ANY_ID }]);
    expect(calls("generic", '{"response": "Hello, world!\\nWhat\'s up?"}')).toEqual({ content: "Hello, world!\nWhat's up?", calls: [] });
    expect(calls("generic", "not JSON at all")).toEqual({ content: "not JSON at all", calls: [] });
    expect(calls("generic", '{"tool_call": {"arguments": {}}}')).toEqual({ content: '{"tool_call": {"arguments": {}}}', calls: [] });
  });
});

describe("tool calls through the real templates", () => {
  const tools = [{
    type: "function",
    function: { name: "get_weather", description: "Weather of a city", parameters: { type: "object", properties: { city: { type: "string" } } } },
  }];
  const conversation = [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "", toolCalls: [{ id: "abcdefghi", name: "get_weather", arguments: '{"city": "Paris"}' }] },
    { role: "tool", content: "sunny and 21", toolCallId: "abcdefghi", name: "get_weather" },
  ];

  it("picks the format from the template's markers, generic where tools are not shown", () => {
    const formatOf = (name: string) => {
      const source = { tokenizer, template: template(name) };
      return toolCallFormatOf(template(name), chatTemplateCaps(source).supportsTools);
    };
    expect(formatOf(TEMPLATES.qwen25)).toBe("hermes");
    expect(formatOf(TEMPLATES.llama32)).toBe("llama3");
    expect(formatOf(TEMPLATES.mistralNemo)).toBe("mistral");
    expect(formatOf(TEMPLATES.gemma2)).toBe("generic");
  });

  it("a call the template writes parses back to the same call, and the tool's answer renders", () => {
    for (const [name, format] of [[TEMPLATES.qwen25, "hermes"], [TEMPLATES.llama32, "llama3"], [TEMPLATES.mistralNemo, "mistral"]] as const) {
      const source = { tokenizer, template: template(name) };
      const full = renderChat(source, conversation, { tools });
      expect(full, name).toContain("sunny and 21");
      // The assistant turn as the model would write it: the template's last call text (Qwen's
      // system prompt shows an example <tool_call> before it).
      const written = renderChat(source, conversation.slice(0, 2), { tools, addGenerationPrompt: false });
      const pattern = /<tool_call>[\s\S]*?<\/tool_call>|\[TOOL_CALLS\]\[[\s\S]*?\](?=<\/s>)|\{"name": "get_weather"[^\n]*\}(?=<\|eot_id\|>)/g;
      const call = [...written.matchAll(pattern)].at(-1)?.[0];
      expect(call, name).toBeDefined();
      const parsed = calls(format, call!);
      expect(parsed.calls.map((c) => [c.name, c.arguments])).toEqual([["get_weather", { city: "Paris" }]]);
    }
  });

  it("a template without tool support gets them described in the system message (llama.cpp's polyfill)", () => {
    const source = { tokenizer, template: template(TEMPLATES.gemma2) };
    const text = renderChat(source, conversation, { tools });
    // Gemma 2 has no system role: the description opens the first user turn.
    expect(text).toContain(`<start_of_turn>user\nYou can call any of the following tools to satisfy the user's requests: ${JSON.stringify(tools)}\nWeather in Paris?`);
    expect(text).toContain(JSON.stringify({ tool_calls: [{ name: "get_weather", arguments: { city: "Paris" }, id: "abcdefghi" }] }));
    expect(text).toContain(JSON.stringify({ tool_response: { tool: "get_weather", content: "sunny and 21", tool_call_id: "abcdefghi" } }));
  });
});

describe("ToolCallStream", () => {
  /** Feeds `text` in pieces of `size` characters; returns the streamed content and the end. */
  function stream(format: ToolCallFormat, text: string, size: number) {
    const s = new ToolCallStream(format);
    let streamed = "";
    const taken: { name: string; arguments: string; at: number }[] = [];
    for (let i = 0; i < text.length; i += size) {
      streamed += s.push(text.slice(i, i + size));
      taken.push(...s.takeCalls().map((c) => ({ ...c, at: Math.min(i + size, text.length) })));
    }
    const end = s.finish();
    taken.push(...end.calls.map((c) => ({ ...c, at: Infinity })));
    return {
      streamed,
      content: streamed + end.content,
      calls: taken.map((c) => [c.name, JSON.parse(c.arguments)]),
      /** How far into the text each call was given out (Infinity: at the end). */
      takenAt: taken.map((c) => c.at),
    };
  }

  it("gives out each marked call as soon as its end arrives; spaces between calls are not content", () => {
    const first = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
    const text = `${first}\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>\n`;
    for (const size of [1, 3, 8]) {
      const r = stream("hermes", text, size);
      expect(r.content).toBe("");
      expect(r.calls).toEqual([["get_weather", { city: "Paris" }], ["get_time", {}]]);
      expect(r.takenAt[0]).toBeLessThan(first.length + size);
      expect(r.takenAt[1]).toBeLessThanOrEqual(text.length);
    }
    expect(stream("hermes", `${first} and then words`, 4)).toMatchObject({ content: " and then words", calls: [["get_weather", { city: "Paris" }]] });
  });

  it("streams content before a call and holds the call back, for any split of the text", () => {
    const text = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
    for (const size of [1, 2, 3, 5, 7, 64]) {
      const r = stream("hermes", text, size);
      expect(r.streamed).toBe("Let me check.");
      expect(r.calls).toEqual([["get_weather", { city: "Paris" }]]);
    }
  });

  it("releases held text that turns out not to be a call", () => {
    for (const size of [1, 4, 100]) {
      expect(stream("hermes", "a <tool_ is not a call", size)).toMatchObject({ content: "a <tool_ is not a call", calls: [] });
      expect(stream("generic", "{not json", size)).toMatchObject({ content: "{not json", calls: [] });
      expect(stream("generic", "plain words", size)).toMatchObject({ streamed: "plain words", calls: [] });
      expect(stream("generic", '{"response": "hi"}', size)).toMatchObject({ streamed: "", content: "hi", calls: [] });
    }
  });
});

describe("forcedToolCallGrammar", () => {
  const weather: ToolDefinition = {
    type: "function",
    function: {
      name: "get_weather",
      parameters: { type: "object", properties: { city: { type: "string", maxLength: 8 }, unit: { enum: ["C", "F"] } }, required: ["city", "unit"] },
    },
  };
  const time: ToolDefinition = { type: "function", function: { name: "get_time", parameters: { type: "object", properties: {} } } };
  const bytes = new TextEncoder();
  /** Whether the grammar matches all of `text`, as bytes. */
  function accepts(gbnf: string, text: string): boolean {
    const m = TokenGrammar.fromGbnf(gbnf, { size: 1, tokenBytes: [undefined], eogIds: [0] }).matcher();
    return m.acceptBytes(bytes.encode(text)) && m.canEnd;
  }

  it("matches a conforming call in each format's own text, which parses back to it, and nothing else", () => {
    const good: Record<ToolCallFormat, string> = {
      generic: '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}}',
      hermes: '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n</tool_call>',
      llama3: '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "C"}}',
      mistral: '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}]',
      phi4: '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}]<|/tool_call|>',
      gemma4: '<|tool_call>call:get_weather{"city": "Paris", "unit": "C"}<tool_call|>',
    };
    for (const [format, text] of Object.entries(good) as [ToolCallFormat, string][]) {
      const gbnf = forcedToolCallGrammar({ tools: [weather, time], format, forced: [weather, time] });
      expect(accepts(gbnf, text), `${format}: ${text}`).toBe(true);
      expect(calls(format, text).calls.map((c) => [c.name, c.arguments])).toEqual([["get_weather", { city: "Paris", unit: "C" }]]);
      // Outside the schema: a string over maxLength, an enum value it lacks, a missing key, an unknown function.
      expect(accepts(gbnf, text.replace("Paris", "Paris-Texas")), format).toBe(false);
      expect(accepts(gbnf, text.replace('"C"', '"K"')), format).toBe(false);
      expect(accepts(gbnf, text.replace(', "unit": "C"', "")), format).toBe(false);
      expect(accepts(gbnf, text.replace("get_weather", "get_wether")), format).toBe(false);
      // Named: only that function.
      const named = forcedToolCallGrammar({ tools: [weather, time], format, forced: [time] });
      expect(accepts(named, text), format).toBe(false);
    }
  });

  it("renames rules and their references, never text inside literals or classes", () => {
    expect(renameRules('root ::= item "root" [a-root]\nitem ::= "x" root?', "p-")).toBe('p-root ::= p-item "root" [a-root]\np-item ::= "x" p-root?');
  });
});
