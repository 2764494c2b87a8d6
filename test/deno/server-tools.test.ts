/**
 * Tool calls through the official `openai` client against a real server process (issue 19):
 * a forced call (`tool_choice` required or named) comes back as `tool_calls` with
 * `finish_reason: "tool_calls"` and arguments that conform to the function's schema over
 * several seeds at temperature 1; streamed deltas reassemble into the same call; `auto`
 * with a model that does not call gives plain content; a `role: "tool"` round trip renders
 * as llama.cpp's polyfill writes it.
 *
 * The model is the tiny synthetic llama (512 positions): its template (ChatML) does not
 * show tools, so they are described in the system message, which with the schema takes
 * about 250 tokens of the embedded model's 256-token context. The conformance check is
 * written from the schema's meaning, not from the grammar.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadEngine } from "../../src/engine/engine.ts";
import { GENERIC_TOOL_INSTRUCTION } from "../../src/engine/tool-calls.ts";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { startServer } from "./support/server-process.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const MODEL_ID = MODEL.split("/").at(-1)!.replace(/\.gguf$/, "");
/** Forced calls run on the default (webgpu) backend: its token-mask kernel enforces the schema. */
const ARGS = ["--model", MODEL, "--max-sequences", "2"];
/** The plain-text test compares with an in-process engine: both on the CPU reference, so the draws agree exactly. */
const CPU_ARGS = [...ARGS, "--backend", "cpu"];

const WEATHER: OpenAI.ChatCompletionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather now",
    parameters: {
      type: "object",
      properties: { city: { type: "string", maxLength: 10 }, unit: { enum: ["C", "F"] } },
      required: ["city", "unit"],
      additionalProperties: false,
    },
  },
};
const TIME: OpenAI.ChatCompletionTool = {
  type: "function",
  function: { name: "get_time", parameters: { type: "object", properties: { zone: { type: "integer" } }, required: ["zone"] } },
};
const MESSAGES: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Weather in Oslo?" }];
const SAMPLING = { temperature: 1, top_p: 1, max_tokens: 160 } as const;

/** Whether `args` conforms to get_weather's parameters, read from the schema above. */
function conformsToWeather(args: unknown): boolean {
  if (typeof args !== "object" || args === null || Array.isArray(args)) return false;
  const a = args as Record<string, unknown>;
  return Object.keys(a).sort().join(",") === "city,unit" && typeof a.city === "string" && [...a.city].length <= 10 &&
    (a.unit === "C" || a.unit === "F");
}

/** A function call's name and arguments (failing on any other kind of call). */
function functionOf(call: OpenAI.ChatCompletionMessageToolCall): { name: string; arguments: string } {
  assert.equal(call.type, "function");
  return (call as OpenAI.ChatCompletionMessageFunctionToolCall).function;
}

function conformsToTime(args: unknown): boolean {
  const a = args as Record<string, unknown>;
  return typeof a === "object" && a !== null && Number.isInteger(a.zone);
}

Deno.test("server-tools: tool_choice required and named force a call whose arguments conform, over seeds", async () => {
  const server = await startServer(ARGS);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    for (const seed of [1, 2, 3, 4]) {
      const r: OpenAI.ChatCompletion = await client.chat.completions.create({
        model: MODEL_ID, messages: MESSAGES, tools: [WEATHER, TIME], tool_choice: "required", seed, ...SAMPLING,
      });
      const choice = r.choices[0]!;
      assert.equal(choice.finish_reason, "tool_calls", JSON.stringify(choice));
      assert.equal(choice.message.content, null);
      const calls = choice.message.tool_calls!;
      assert.equal(calls.length, 1);
      assert.match(calls[0]!.id, /^call_[A-Za-z0-9]{24}$/);
      const { name, arguments: text } = functionOf(calls[0]!);
      const args = JSON.parse(text);
      assert.ok(name === "get_weather" ? conformsToWeather(args) : name === "get_time" && conformsToTime(args), `${name} ${text}`);
    }
    for (const seed of [5, 6]) {
      const r: OpenAI.ChatCompletion = await client.chat.completions.create({
        model: MODEL_ID, messages: MESSAGES, tools: [WEATHER, TIME], seed, ...SAMPLING,
        tool_choice: { type: "function", function: { name: "get_weather" } },
      });
      const call = functionOf(r.choices[0]!.message.tool_calls![0]!);
      assert.equal(r.choices[0]!.finish_reason, "tool_calls");
      assert.equal(call.name, "get_weather");
      assert.ok(conformsToWeather(JSON.parse(call.arguments)), call.arguments);
    }
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test("server-tools: streamed tool_calls deltas reassemble into the non-streamed call", async () => {
  const server = await startServer(ARGS);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const request = { model: MODEL_ID, messages: MESSAGES, tools: [WEATHER], tool_choice: "required" as const, seed: 7, ...SAMPLING };
    const whole = await client.chat.completions.create(request);
    const stream = await client.chat.completions.create({ ...request, stream: true });
    const calls: { id: string; name: string; arguments: string }[] = [];
    let finish: string | null = null;
    let content = "";
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (!choice) continue;
      content += choice.delta.content ?? "";
      for (const d of choice.delta.tool_calls ?? []) {
        calls[d.index] ??= { id: "", name: "", arguments: "" };
        const call = calls[d.index]!;
        call.id += d.id ?? "";
        call.name += d.function?.name ?? "";
        call.arguments += d.function?.arguments ?? "";
      }
      finish = choice.finish_reason ?? finish;
    }
    assert.equal(finish, "tool_calls");
    assert.equal(content, "");
    const expected = whole.choices[0]!.message.tool_calls!;
    assert.deepEqual(calls.map((c) => [c.name, c.arguments]), expected.map((c) => [functionOf(c).name, functionOf(c).arguments]));
    assert.match(calls[0]!.id, /^call_[A-Za-z0-9]{24}$/);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test("server-tools: auto with a model that does not call gives its text as content; a tool round trip renders", async () => {
  // The model's raw text for the same prompt, from the engine in this process, fed as token ids.
  const engine = await loadEngine(MODEL, { backend: "cpu", maxSequences: 1 });
  const server = await startServer(CPU_ARGS);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const auto = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, tools: [WEATHER], seed: 3, ...SAMPLING, max_tokens: 12 });
    const mine = await engine.generate(MESSAGES as { role: string; content: string }[], {
      tools: [WEATHER as never], seed: 3, temperature: 1, topP: 1, maxTokens: 12,
    }).result;
    const raw = await engine.generate({ tokens: mine.promptTokens }, { seed: 3, temperature: 1, topP: 1, maxTokens: 12 }).result;
    assert.ok(!raw.text.trimStart().startsWith("{"), `the model wrote JSON: ${raw.text}`);
    assert.equal(auto.choices[0]!.message.content, raw.text);
    assert.equal(auto.choices[0]!.message.tool_calls, undefined);
    assert.equal(auto.choices[0]!.finish_reason, raw.finishReason);

    // A call answered by a tool: this ChatML template cannot show tool_calls, so the call is
    // JSON content (llama.cpp's polyfill), while it shows any role, the tool's answer
    // included; the system message carries the instruction and the tools.
    const roundTrip: OpenAI.ChatCompletionMessageParam[] = [
      { role: "user", content: "Oslo?" },
      { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo","unit":"C"}' } }] },
      { role: "tool", tool_call_id: "c1", content: "cold" },
    ];
    const answered = await client.chat.completions.create({ model: MODEL_ID, messages: roundTrip, tools: [WEATHER], max_tokens: 2, temperature: 0 });
    const system = `${GENERIC_TOOL_INSTRUCTION}\n\nYou can call any of the following tools to satisfy the user's requests: ${JSON.stringify([WEATHER])}`;
    const expectedPrompt = `<|im_start|>system\n${system}<|im_end|>\n<|im_start|>user\nOslo?<|im_end|>\n` +
      `<|im_start|>assistant\n${JSON.stringify({ tool_calls: [{ name: "get_weather", arguments: { city: "Oslo", unit: "C" }, id: "c1" }] })}<|im_end|>\n` +
      `<|im_start|>tool\ncold<|im_end|>\n<|im_start|>assistant\n`;
    assert.equal(answered.usage!.prompt_tokens, engine.tokenizer.encode(expectedPrompt).length);

    await assert.rejects(
      client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, tools: [WEATHER], tool_choice: { type: "function", function: { name: "nope" } } }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === "tool_choice.function.name",
    );
    await assert.rejects(
      client.chat.completions.create({ model: MODEL_ID, messages: [{ role: "tool", content: "x" } as never] }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === "messages[0].tool_call_id",
    );
  } finally {
    await engine.dispose();
    assert.equal((await server.stop()).code, 0);
  }
});
