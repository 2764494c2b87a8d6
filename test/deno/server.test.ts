/**
 * The HTTP server as a real process, driven by the official `openai` client and by plain
 * fetch for the cases a well-behaved client never sends. Expected texts come from the
 * engine itself, run in this process with the same model and greedy sampling.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadEngine } from "../../src/engine/engine.ts";
import type { ChatMessage } from "../../src/engine/types.ts";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { BACKENDS } from "./support/backends.ts";
import { startServer } from "./support/server-process.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const MODEL_ID = MODEL.split("/").at(-1)!.replace(/\.gguf$/, "");
const backend = BACKENDS.at(-1)!; // the most real backend available here
const SERVER_ARGS = ["--model", MODEL, "--backend", backend.options.backend ?? "webgpu", "--max-sequences", "4"];

const CHAT: Array<ChatMessage & { role: "user" }> = [{ role: "user", content: "Tell me about the sea." }];
const PROMPTS = Array.from({ length: 32 }, (_, i) => `Story number ${i}:`);

/** What the engine itself produces, greedy, for the prompts the tests send. */
const expected = await (async () => {
  const engine = await loadEngine(MODEL, { ...backend.options, maxSequences: 8 });
  try {
    const greedy = { temperature: 0, maxTokens: 16 } as const;
    const chat = (await engine.generate(CHAT, greedy).result).text;
    const text = (await engine.generate("Once upon a time", greedy).result).text;
    const stories = await Promise.all(PROMPTS.map(async (p) => (await engine.generate(p, { temperature: 0, maxTokens: 8 }).result).text));
    return { chat, text, stories };
  } finally {
    await engine.dispose();
  }
})();

function metricValue(metrics: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(metrics);
  assert.ok(m, `metric ${name} present`);
  return Number(m[1]);
}

Deno.test(`server[${backend.name}]: openai client, chat and completions, streaming and not`, async () => {
  const server = await startServer(SERVER_ARGS);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [MODEL_ID]);

    const chat = await client.chat.completions.create({ model: MODEL_ID, messages: CHAT, temperature: 0, max_tokens: 16 });
    assert.equal(chat.choices[0]!.message.content, expected.chat);
    assert.ok(chat.choices[0]!.finish_reason === "length" || chat.choices[0]!.finish_reason === "stop");
    assert.ok(chat.usage!.prompt_tokens > 0);
    assert.equal(chat.usage!.total_tokens, chat.usage!.prompt_tokens + chat.usage!.completion_tokens);

    const chatStream = await client.chat.completions.create({
      model: MODEL_ID,
      messages: CHAT,
      temperature: 0,
      max_tokens: 16,
      stream: true,
      stream_options: { include_usage: true },
    });
    let streamed = "";
    let usageSeen = false;
    let finish: string | null = null;
    for await (const chunk of chatStream) {
      if (chunk.usage) usageSeen = true;
      for (const choice of chunk.choices) {
        streamed += choice.delta.content ?? "";
        finish = choice.finish_reason ?? finish;
      }
    }
    assert.equal(streamed, expected.chat);
    assert.ok(usageSeen, "usage chunk with include_usage");
    assert.ok(finish === "length" || finish === "stop");

    const completion = await client.completions.create({ model: MODEL_ID, prompt: "Once upon a time", temperature: 0, max_tokens: 16 });
    assert.equal(completion.choices[0]!.text, expected.text);
    const completionStream = await client.completions.create({
      model: MODEL_ID,
      prompt: "Once upon a time",
      temperature: 0,
      max_tokens: 16,
      stream: true,
    });
    let text = "";
    for await (const chunk of completionStream) text += chunk.choices[0]?.text ?? "";
    assert.equal(text, expected.text);

    // The raw stream ends with `data: [DONE]`.
    const raw = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Hi", max_tokens: 3, stream: true }),
    });
    assert.equal(raw.headers.get("content-type"), "text/event-stream");
    assert.ok((await raw.text()).trimEnd().endsWith("data: [DONE]"));
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test(`server[${backend.name}]: 32 concurrent streams; 8 that disconnect leave the server healthy`, async () => {
  const server = await startServer(SERVER_ARGS);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const runs = PROMPTS.map(async (prompt, i) => {
      const leaves = i % 4 === 3; // 8 of the 32
      const controller = new AbortController();
      const stream = await client.completions.create(
        // `ignore_eos` (llama.cpp's extension) keeps the leaving streams going until they leave.
        { model: MODEL_ID, prompt, temperature: 0, max_tokens: leaves ? 10_000 : 8, stream: true, ...{ ignore_eos: leaves } },
        { signal: controller.signal },
      );
      let text = "";
      try {
        for await (const chunk of stream) {
          text += chunk.choices[0]?.text ?? "";
          if (leaves && text.length > 0) controller.abort();
        }
      } catch (e) {
        if (!leaves) throw e;
      }
      return controller.signal.aborted ? "left" : text;
    });
    const results = await Promise.all(runs);
    results.forEach((text, i) => {
      if (i % 4 === 3) assert.equal(text, "left");
      else assert.equal(text, expected.stories[i], `stream ${i}`);
    });
    // The server notices each disconnect and frees the slot; it answers health checks meanwhile.
    assert.equal((await (await fetch(`${server.url}/health`)).json()).status, "ok");
    let metrics = "";
    for (let attempt = 0; attempt < 200; attempt++) {
      metrics = await (await fetch(`${server.url}/metrics`)).text();
      if (metricValue(metrics, "llm_requests_in_flight") === 0) break;
      // Each poll is a full HTTP round trip to the server: no sleeping, the server's own pace.
    }
    assert.equal(metricValue(metrics, "llm_requests_in_flight"), 0);
    assert.equal(metricValue(metrics, "llm_free_slots"), 4);
    assert.equal(metricValue(metrics, "llm_queue_depth"), 0);
    assert.equal(metricValue(metrics, "llm_requests_cancelled_total"), 8);
    const after = await client.completions.create({ model: MODEL_ID, prompt: PROMPTS[0]!, temperature: 0, max_tokens: 8 });
    assert.equal(after.choices[0]!.text, expected.stories[0]);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test(`server[${backend.name}]: bad input gets 4xx in the OpenAI error shape`, async () => {
  const server = await startServer([...SERVER_ARGS, "--max-concurrency", "2", "--api-key", "sesame"]);
  const auth = { authorization: "Bearer sesame", "content-type": "application/json" };
  const post = (path: string, body: string, headers: Record<string, string> = auth) =>
    fetch(`${server.url}${path}`, { method: "POST", headers, body });
  const expectError = async (response: Response, status: number, param?: string) => {
    const body = await response.json();
    assert.equal(response.status, status, JSON.stringify(body));
    assert.equal(typeof body.error.message, "string");
    assert.ok("type" in body.error && "param" in body.error && "code" in body.error);
    if (param !== undefined) assert.equal(body.error.param, param);
    return body.error;
  };
  try {
    // Authentication: everything but /health needs the key.
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    await expectError(await fetch(`${server.url}/v1/models`), 401);
    await expectError(await fetch(`${server.url}/v1/models`, { headers: { authorization: "Bearer wrong" } }), 401);
    assert.equal((await fetch(`${server.url}/v1/models`, { headers: auth })).status, 200);
    // CORS is off unless origins are given.
    const cors = await fetch(`${server.url}/v1/models`, { headers: { ...auth, origin: "http://evil.example" } });
    assert.equal(cors.headers.get("access-control-allow-origin"), null);
    await cors.body?.cancel();

    await expectError(await post("/v1/chat/completions", "{not json"), 400);
    await expectError(await post("/v1/chat/completions", "[1,2]"), 400);
    await expectError(await post("/v1/chat/completions", JSON.stringify({ messages: "hi" })), 400, "messages");
    await expectError(await post("/v1/chat/completions", JSON.stringify({ messages: [{ role: "robot", content: "x" }] })), 400, "messages[0].role");
    await expectError(await post("/v1/completions", JSON.stringify({ prompt: "x", temperature: "hot" })), 400, "temperature");
    await expectError(await post("/v1/completions", JSON.stringify({ prompt: "x", temperature: 3 })), 400, "temperature");
    await expectError(await post("/v1/completions", JSON.stringify({ prompt: "x", top_p: 0 })), 400, "top_p");
    await expectError(await post("/v1/completions", JSON.stringify({ prompt: "x", max_tokens: -1 })), 400, "max_tokens");
    await expectError(await post("/v1/completions", JSON.stringify({ prompt: "x", n: 0 })), 400, "n");
    await expectError(await post("/v1/completions", JSON.stringify({ prompt: 42 })), 400, "prompt");
    await expectError(await post("/v1/completions", JSON.stringify({ prompt: "x", model: "gpt-9" })), 404, "model");
    await expectError(await post("/v1/completions", JSON.stringify({ prompt: "word ".repeat(5000) })), 400);
    await expectError(await post("/v1/completions", JSON.stringify({ prompt: "x".repeat(2 << 20) })), 413);
    await expectError(await fetch(`${server.url}/v1/nothing`, { headers: auth }), 404);

    // Queue full: two long requests in flight, the third gets 429 with Retry-After.
    const controllers = [new AbortController(), new AbortController()];
    const long = await Promise.all(controllers.map(async (c) => {
      const r = await fetch(`${server.url}/v1/completions`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ prompt: "Go on", max_tokens: 100_000, ignore_eos: true, stream: true }),
        signal: c.signal,
      });
      const reader = r.body!.getReader();
      await reader.read(); // in flight for sure
      return reader;
    }));
    const busy = await post("/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 1 }));
    const retryAfter = busy.headers.get("retry-after");
    await expectError(busy, 429);
    assert.equal(retryAfter, "1");
    for (const c of controllers) c.abort();
    await Promise.allSettled(long.map((r) => r.cancel()));
    // The server sees the disconnects on its own schedule; each poll is a real round trip.
    for (let attempt = 0; attempt < 500; attempt++) {
      const metrics = await (await fetch(`${server.url}/metrics`, { headers: auth })).text();
      if (metricValue(metrics, "llm_requests_in_flight") === 0) break;
    }

    // Still healthy and serving.
    const ok = await post("/v1/completions", JSON.stringify({ prompt: "Once upon a time", max_tokens: 16, temperature: 0 }));
    assert.equal((await ok.json()).choices[0].text, expected.text);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test(`server[${backend.name}]: SIGTERM with streams in flight ends every stream and exits 0`, async () => {
  const server = await startServer([...SERVER_ARGS, "--grace-period", "0.5"]);
  const streams = await Promise.all(
    [8, 10_000, 10_000].map(async (maxTokens) => {
      const r = await fetch(`${server.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "Go on", max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true }),
      });
      const reader = r.body!.getReader();
      const first = await reader.read();
      return { reader, first: new TextDecoder().decode(first.value) };
    }),
  );
  const status = server.stop("SIGTERM");
  const bodies = await Promise.all(streams.map(async ({ reader, first }) => {
    let text = first;
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    return text;
  }));
  for (const body of bodies) assert.ok(body.trimEnd().endsWith("data: [DONE]"), body.slice(-200));
  // The short one finished within the grace period; the endless ones were cancelled with an error event.
  assert.match(bodies[0]!, /"finish_reason":"(length|stop)"/);
  assert.ok(bodies[1]!.includes('"error"'));
  assert.equal((await status).code, 0);
  assert.match(server.stderr(), /SIGTERM: shutting down/);
});
