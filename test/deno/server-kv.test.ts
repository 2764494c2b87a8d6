/**
 * The server's side of the KV pool (issue 15), through the official `openai` client
 * against a real server process: `usage.prompt_tokens_details.cached_tokens` on a chat's
 * second turn, and `n` > 1 choices in both endpoints, streamed and not. Expected texts and
 * counts come from the engine run in this process (prefix cache off for texts), and the
 * reused count from its definition: the common prefix of the two turns' tokens, in whole
 * pages, leaving the last prompt token to compute.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadEngine } from "../../src/engine/engine.ts";
import { choiceSeed } from "../../src/engine/options.ts";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { BACKENDS } from "./support/backends.ts";
import { startServer } from "./support/server-process.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const MODEL_ID = MODEL.split("/").at(-1)!.replace(/\.gguf$/, "");
const backend = BACKENDS.at(-1)!; // the most real backend available here
const SERVER_ARGS = ["--model", MODEL, "--backend", backend.options.backend ?? "webgpu", "--max-sequences", "4"];

/** A chat message both the engine and the openai client take. */
type Message = { role: "system" | "user" | "assistant"; content: string };

const TURN1: Message[] = [
  { role: "system", content: "You are a sailor who answers in long sentences about the weather at sea." },
  { role: "user", content: "Tell me about the sea, the wind and the waves near the harbour this morning." },
];
const GREEDY = { temperature: 0, max_tokens: 24 } as const;
const SEEDED = { temperature: 1, top_p: 1, seed: 21, max_tokens: 12, ...{ top_k: 0, min_p: 0, ignore_eos: true } };

/** What the engine in this process gives: both turns, and each choice as an `n: 1` request. */
const expected = await (async () => {
  const engine = await loadEngine(MODEL, { ...backend.options, maxSequences: 4 });
  try {
    const greedy = { temperature: 0, maxTokens: 24 } as const;
    const r1 = await engine.generate(TURN1, greedy).result;
    const turn2: Message[] = [...TURN1, { role: "assistant", content: r1.text }, { role: "user", content: "And tonight?" }];
    const r2 = await engine.generate(turn2, greedy).result;
    const ps = engine.kvPool.pageSize;
    const held = [...r1.promptTokens, ...r1.tokens];
    let common = 0;
    while (common < held.length && held[common] === r2.promptTokens[common]) common++;
    const reused = Math.floor(Math.min(common, r2.promptTokens.length - 1) / ps) * ps;
    const seeded = { temperature: 1, topP: 1, topK: 0, minP: 0, ignoreEos: true, maxTokens: 12 };
    const choices = [];
    for (let i = 0; i < 3; i++) {
      choices.push((await engine.generate("Once upon a time", { ...seeded, seed: choiceSeed(21, i) }).result).text);
    }
    return { turn1: r1.text, turn2: r2.text, messages2: turn2, reused, choices };
  } finally {
    await engine.dispose();
  }
})();

Deno.test(`server-kv[${backend.name}]: a chat's second turn reports its reused prompt as cached_tokens`, async () => {
  const server = await startServer(SERVER_ARGS);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const first = await client.chat.completions.create({ model: MODEL_ID, messages: TURN1, ...GREEDY });
    assert.equal(first.choices[0]!.message.content, expected.turn1);
    assert.equal(first.usage!.prompt_tokens_details!.cached_tokens, 0);
    const second = await client.chat.completions.create({ model: MODEL_ID, messages: expected.messages2, ...GREEDY });
    assert.equal(second.choices[0]!.message.content, expected.turn2);
    assert.ok(expected.reused > 0);
    assert.equal(second.usage!.prompt_tokens_details!.cached_tokens, expected.reused);
    // Streamed, with usage: the same turn again reuses at least as much.
    const stream = await client.chat.completions.create({
      model: MODEL_ID,
      messages: expected.messages2,
      ...GREEDY,
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | undefined;
    let text = "";
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, expected.turn2);
    assert.ok(usage!.prompt_tokens_details!.cached_tokens! >= expected.reused);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test(`server-kv[${backend.name}]: n choices in both endpoints, streamed and not, each from its own seed`, async () => {
  const server = await startServer(SERVER_ARGS);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const text = await client.completions.create({ model: MODEL_ID, prompt: "Once upon a time", n: 3, ...SEEDED });
    assert.deepEqual(text.choices.map((c) => c.index), [0, 1, 2]);
    assert.deepEqual(text.choices.map((c) => c.text), expected.choices);
    assert.notEqual(expected.choices[1], expected.choices[0]);
    assert.equal(text.usage!.completion_tokens, 3 * SEEDED.max_tokens);

    const streamed = await client.completions.create({ model: MODEL_ID, prompt: "Once upon a time", n: 3, ...SEEDED, stream: true });
    const parts = ["", "", ""];
    const finishes: string[] = [];
    for await (const chunk of streamed) {
      for (const c of chunk.choices) {
        parts[c.index] += c.text;
        if (c.finish_reason) finishes.push(`${c.index}:${c.finish_reason}`);
      }
    }
    assert.deepEqual(parts, expected.choices);
    assert.deepEqual(finishes.sort(), ["0:length", "1:length", "2:length"]);

    const chat = await client.chat.completions.create({ model: MODEL_ID, messages: TURN1, n: 2, ...SEEDED });
    assert.equal(chat.choices.length, 2);
    assert.deepEqual(chat.choices.map((c) => c.index), [0, 1]);
    const one = await client.chat.completions.create({ model: MODEL_ID, messages: TURN1, ...SEEDED });
    assert.equal(chat.choices[0]!.message.content, one.choices[0]!.message.content);
    assert.notEqual(chat.choices[1]!.message.content, chat.choices[0]!.message.content);
    const chatStream = await client.chat.completions.create({ model: MODEL_ID, messages: TURN1, n: 2, ...SEEDED, stream: true });
    const chatParts = ["", ""];
    const roles = new Set<number>();
    for await (const chunk of chatStream) {
      for (const c of chunk.choices) {
        chatParts[c.index] += c.delta.content ?? "";
        if (c.delta.role === "assistant") roles.add(c.index);
      }
    }
    assert.deepEqual(chatParts, chat.choices.map((c) => c.message.content));
    assert.deepEqual([...roles].sort(), [0, 1]);

    const tooMany = await client.completions.create({ model: MODEL_ID, prompt: "Hi", n: 1000 }).then(() => undefined, (e) => e);
    assert.ok(tooMany instanceof OpenAI.BadRequestError);
    assert.match(tooMany.message, /\bn\b/);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});
