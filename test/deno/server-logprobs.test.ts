/**
 * `logprobs` / `top_logprobs` through the official `openai` client against the real server:
 * chat streamed and not (the same seed gives the same tokens, so the same logprobs), the
 * legacy completions shape, and the 400 for top_logprobs above 20. Values checked for what
 * a log-softmax guarantees: ≤ 0, alternatives sorted, their p summing to at most 1, the
 * sampled token's logprob equal to its entry among the alternatives, the pieces' bytes
 * spelling the content.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { BACKENDS } from "./support/backends.ts";
import { startServer } from "./support/server-process.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const MODEL_ID = MODEL.split("/").at(-1)!.replace(/\.gguf$/, "");
const backend = BACKENDS.at(-1)!;
const SERVER_ARGS = ["--model", MODEL, "--backend", backend.options.backend ?? "webgpu", "--max-sequences", "2"];
const REQUEST = {
  model: MODEL_ID,
  messages: [{ role: "user" as const, content: "Tell me about the sea." }],
  temperature: 0.8,
  seed: 5,
  max_tokens: 6,
  logprobs: true,
  top_logprobs: 3,
};

type ChatLogprob = OpenAI.Chat.Completions.ChatCompletionTokenLogprob;

function checkChatLogprobs(content: readonly ChatLogprob[], text: string): void {
  assert.ok(content.length > 0, "one entry per token");
  for (const t of content) {
    assert.ok(t.logprob <= 0, `logprob ${t.logprob} ≤ 0`);
    assert.equal(t.top_logprobs.length, 3);
    t.top_logprobs.forEach((c, j) => assert.ok(c.logprob <= 0 && (j === 0 || c.logprob <= t.top_logprobs[j - 1]!.logprob), "sorted, ≤ 0"));
    assert.ok(t.top_logprobs.reduce((s, c) => s + Math.exp(c.logprob), 0) <= 1 + 1e-5, "Σ p ≤ 1");
    const same = t.top_logprobs.find((c) => c.bytes!.join() === t.bytes!.join());
    if (same) assert.equal(same.logprob, t.logprob, "the sampled token's entry among the alternatives");
  }
  const bytes = content.flatMap((t) => t.bytes!);
  assert.equal(new TextDecoder().decode(new Uint8Array(bytes)), text, "the tokens' bytes spell the content");
}

Deno.test(`server[${backend.name}]: logprobs and top_logprobs through the openai client`, async () => {
  const server = await startServer(SERVER_ARGS);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });

    const chat = await client.chat.completions.create({ ...REQUEST, ignore_eos: true } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    const content = chat.choices[0]!.logprobs!.content!;
    assert.equal(content.length, chat.usage!.completion_tokens);
    checkChatLogprobs(content, chat.choices[0]!.message.content!);

    const stream = await client.chat.completions.create({ ...REQUEST, ignore_eos: true, stream: true } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
    const streamed: ChatLogprob[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    assert.deepEqual(streamed, content, "streamed: the same tokens and logprobs, chunk by chunk");

    const text = await client.completions.create({ model: MODEL_ID, prompt: "Once upon a time", max_tokens: 4, seed: 1, logprobs: 2, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const lp = text.choices[0]!.logprobs!;
    assert.equal(lp.tokens!.length, 4);
    assert.equal(lp.tokens!.join(""), text.choices[0]!.text);
    assert.deepEqual(lp.text_offset, lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join("").length));
    assert.ok(lp.token_logprobs!.every((v) => v <= 0));
    assert.ok(lp.top_logprobs!.every((top) => Object.keys(top).length <= 2 && Object.values(top).every((v) => v <= 0)));

    const plain = await client.chat.completions.create({ model: MODEL_ID, messages: REQUEST.messages, max_tokens: 2 });
    assert.equal(plain.choices[0]!.logprobs, null, "no logprobs unless asked");

    await assert.rejects(
      client.chat.completions.create({ ...REQUEST, top_logprobs: 21 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === "top_logprobs",
    );
  } finally {
    await server.stop();
  }
});
