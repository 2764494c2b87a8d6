/**
 * The HTTP server against hostile and careless clients (issue 17), through the real
 * `serve` process: the official `openai` client where a client would send it, raw fetch
 * or raw TCP for what a well-behaved client never sends. The CPU backend runs the model:
 * these tests are about HTTP, and it loads fastest. No test waits on a timer; where the
 * server works on its own schedule, the test polls it by real round trips.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import OpenAI from "openai";
import { createEngine } from "../../src/engine/engine.ts";
import { createHandler } from "../../src/server/handler.ts";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { rawConnection, spawnServer, startServer } from "./support/server-process.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const MODEL_ID = MODEL.split("/").at(-1)!.replace(/\.gguf$/, "");
const ARGS = ["--model", MODEL, "--backend", "cpu", "--max-sequences", "2"];
const JSON_HEADERS = { "content-type": "application/json" };
const TOO_LONG = "word ".repeat(5000);

function metricValue(metrics: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(metrics);
  assert.ok(m, `metric ${name} present`);
  return Number(m[1]);
}

/** Polls /metrics (each poll a full round trip) until `done` holds; fails after `attempts`. */
async function metricsWhen(
  url: string,
  done: (metrics: string) => boolean,
  headers: Record<string, string> = {},
  attempts = 2000,
): Promise<string> {
  let metrics = "";
  for (let i = 0; i < attempts; i++) {
    metrics = await (await fetch(`${url}/metrics`, { headers })).text();
    if (done(metrics)) return metrics;
  }
  assert.fail(`the condition was not reached after ${attempts} polls of /metrics:\n${metrics}`);
}

const inFlight = (n: number) => (m: string) => metricValue(m, "llm_requests_in_flight") === n;

function post(url: string, path: string, body: unknown, headers: Record<string, string> = JSON_HEADERS) {
  return fetch(`${url}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
}

/** The status line's code of a raw HTTP response. */
function statusOf(raw: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(raw);
  assert.ok(m, `an HTTP response: ${JSON.stringify(raw.slice(0, 200))}`);
  return Number(m[1]);
}

Deno.test("server: stderr holds only what a user needs after a session with a disconnect and SIGTERM", async () => {
  const server = await startServer(ARGS);
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  await client.completions.create({ model: MODEL_ID, prompt: "Once upon a time", max_tokens: 4 });
  const stream = await client.chat.completions.create({
    model: MODEL_ID,
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 4,
    stream: true,
  });
  for await (const _ of stream);
  // A client that leaves mid-stream.
  const leaving = new AbortController();
  const endless = await client.completions.create(
    { model: MODEL_ID, prompt: "Go on", max_tokens: 100_000, stream: true, ...{ ignore_eos: true } },
    { signal: leaving.signal },
  );
  try {
    for await (const _ of endless) leaving.abort();
  } catch {
    // The client's own abort: how it surfaces is the client's business.
  }
  assert.ok(leaving.signal.aborted);
  await metricsWhen(server.url, (m) => metricValue(m, "llm_requests_cancelled_total") === 1);
  await metricsWhen(server.url, inFlight(0));
  assert.equal((await server.stop("SIGTERM")).code, 0);
  const lines = server.stderr().trimEnd().split("\n");
  const expected = [/^listening on http:\/\/127\.0\.0\.1:\d+$/, /^model loaded: /, /^SIGTERM: shutting down/];
  assert.equal(lines.length, expected.length, server.stderr());
  for (const line of lines) {
    assert.ok(expected.some((re) => re.test(line)), `unexpected stderr line: ${line}`);
  }
});

/** Spawns serve with a model that cannot load, polls /health while it runs, returns how it ended. */
async function serveBadModel(model: string): Promise<{ code: number; stderr: string; healthSeen: number[] }> {
  const spawned = spawnServer(["--model", model, "--backend", "cpu"]);
  const healthSeen: number[] = [];
  const url = await spawned.listening.catch(() => undefined);
  let exited = false;
  spawned.status.then(() => (exited = true));
  while (url && !exited) {
    // Each poll is a real round trip; a refused connection means the server is gone.
    const health = await fetch(`${url}/health`).catch(() => undefined);
    if (!health) break;
    const body = await health.json();
    healthSeen.push(health.status);
    assert.ok(body.status !== "ok", `/health claims ok for a model that cannot load: ${JSON.stringify(body)}`);
  }
  const status = await spawned.status;
  await spawned.drained;
  return { code: status.code, stderr: spawned.stderr(), healthSeen };
}

Deno.test("server: a model that fails to load ends serve with a non-zero code naming the file and the problem", async () => {
  const missing = await serveBadModel("/nonexistent.gguf");
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /^error: .*\/nonexistent\.gguf.*no such file/m);

  const corrupt = await Deno.makeTempFile({ suffix: ".gguf" });
  try {
    // A GGUF magic and version, then the file ends inside the fixed header.
    await writeFile(corrupt, new Uint8Array([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0, 1, 2]));
    const truncated = await serveBadModel(corrupt);
    assert.notEqual(truncated.code, 0);
    assert.ok(truncated.stderr.includes(corrupt), truncated.stderr);
    assert.match(truncated.stderr, /^error: .*header/m);
  } finally {
    await Deno.remove(corrupt);
  }
});

Deno.test("server: /health reports a failed engine as 503 with its state", async () => {
  const engine = createEngine("/nonexistent.gguf", { backend: "cpu" });
  await assert.rejects(engine.ready);
  const handler = createHandler(engine, { modelId: "m" });
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  const health = await fetch(`http://127.0.0.1:${server.addr.port}/health`);
  assert.equal(health.status, 503);
  assert.deepEqual(await health.json(), { status: "failed" });
  await engine.dispose();
});

Deno.test("server: an empty --api-key is refused like any bad flag; the Bearer scheme is case-insensitive", async () => {
  const badFlag = spawnServer([...ARGS, "--port", "-1"]);
  const badFlagCode = (await badFlag.status).code;
  await badFlag.drained;
  assert.notEqual(badFlagCode, 0);
  for (const key of ["", "   "]) {
    const spawned = spawnServer([...ARGS, "--api-key", key]);
    // `listening` settles either way: resolved once it listens, rejected once it exited first.
    const listened = await spawned.listening.then(() => true, () => false);
    if (listened) spawned.process.kill("SIGKILL");
    const status = await spawned.status;
    await spawned.drained;
    assert.ok(!listened, `serve --api-key ${JSON.stringify(key)} started without authentication`);
    assert.equal(status.code, badFlagCode, "the exit code of a flag error");
    assert.match(spawned.stderr(), /^error: --api-key: is empty/m);
  }

  const server = await startServer([...ARGS, "--api-key", "sesame"]);
  try {
    const models = (authorization: string) => fetch(`${server.url}/v1/models`, { headers: { authorization } });
    for (const header of ["Bearer sesame", "bearer sesame", "BEARER sesame", "Bearer   sesame", "bEaReR\tsesame "]) {
      const r = await models(header);
      assert.equal(r.status, 200, header);
      await r.body?.cancel();
    }
    for (const header of ["Bearer sesamex", "Basic sesame", "Bearersesame", "Bearer", "sesame"]) {
      const r = await models(header);
      assert.equal(r.status, 401, header);
      await r.body?.cancel();
    }
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "sesame", maxRetries: 0 });
    assert.deepEqual((await client.models.list()).data.map((m) => m.id), [MODEL_ID]);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test("server: --max-concurrency counts requests whose bodies are still arriving; every path releases", async () => {
  const server = await startServer([...ARGS, "--max-concurrency", "2", "--body-timeout", "1", "--grace-period", "0"]);
  const stalled = await rawConnection(server.url);
  try {
    const body = JSON.stringify({ prompt: "Once upon a time", max_tokens: 2, temperature: 0 });
    const slow = await Promise.all([0, 1].map(async () => {
      const c = await rawConnection(server.url);
      await c.send(
        `POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n` +
          `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body.slice(0, 10)}`,
      );
      return c;
    }));
    // Admitted while their bodies are unfinished: the server counts them before reading.
    await metricsWhen(server.url, inFlight(2));
    const busy = await post(server.url, "/v1/completions", { prompt: "x", max_tokens: 1 });
    assert.equal(busy.status, 429);
    assert.equal((await busy.json()).error.code, "queue_full");
    for (const c of slow) await c.send(body.slice(10));
    for (const c of slow) {
      const response = await c.response();
      c.close();
      assert.equal(statusOf(response), 200, response);
      assert.match(response, /"finish_reason":"(length|stop)"/);
    }
    await metricsWhen(server.url, inFlight(0));

    // Every way out of a request gives its admission back: invalid JSON, a body too large,
    // a body that stalls (408 after --body-timeout), a prompt too long, an unknown model.
    assert.equal((await fetch(`${server.url}/v1/completions`, { method: "POST", body: "{" })).status, 400);
    const large = await fetch(`${server.url}/v1/completions`, { method: "POST", body: "x".repeat(2 << 20) });
    assert.equal(large.status, 413);
    await large.body?.cancel();
    await stalled.send(
      `POST /v1/completions HTTP/1.1\r\nhost: localhost\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 5)}`,
    );
    // The server answers once the body has been silent for 1 s (Deno keeps the socket open until the client closes it).
    const timedOut = await stalled.response();
    assert.equal(statusOf(timedOut), 408, timedOut);
    assert.match(timedOut, /"code":"request_timeout"/);
    assert.equal((await post(server.url, "/v1/completions", { prompt: TOO_LONG })).status, 400);
    assert.equal((await post(server.url, "/v1/completions", { prompt: "x", model: "other" })).status, 404);
    const metrics = await metricsWhen(server.url, inFlight(0));
    assert.equal(metricValue(metrics, "llm_requests_in_flight"), 0);
    // Both admissions are free again: two requests at once succeed.
    const pair = await Promise.all([0, 1].map(() => post(server.url, "/v1/completions", JSON.parse(body))));
    for (const r of pair) assert.equal(r.status, 200, await r.text());
  } finally {
    // The stalled client still holds its socket (Deno keeps it after the 408): shutdown
    // closes it once the grace period is over instead of waiting for it forever.
    assert.equal((await server.stop()).code, 0);
    stalled.close();
  }
});

Deno.test("server: a streamed prompt too long gets the same 400 as a non-streamed one, before any 200", async () => {
  const server = await startServer(ARGS);
  try {
    for (const stream of [false, true]) {
      const text = await post(server.url, "/v1/completions", { prompt: TOO_LONG, max_tokens: 4, stream });
      assert.equal(text.status, 400, `stream: ${stream}`);
      assert.equal((await text.json()).error.code, "context_length_exceeded");
      const chat = await post(server.url, "/v1/chat/completions", {
        messages: [{ role: "user", content: TOO_LONG }],
        max_tokens: 4,
        stream,
      });
      assert.equal(chat.status, 400, `chat stream: ${stream}`);
      assert.equal((await chat.json()).error.code, "context_length_exceeded");
    }
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    await assert.rejects(
      client.chat.completions.create({
        model: MODEL_ID,
        messages: [{ role: "user", content: TOO_LONG }],
        stream: true,
      }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.code === "context_length_exceeded",
    );
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test("server: OpenAI parameters not implemented are refused by name; no-op values and harmless fields pass", async () => {
  const server = await startServer(ARGS);
  try {
    const refused: Array<[string, unknown]> = [
      ["tools", [{ type: "function", function: { name: "f", parameters: {} } }]],
      ["functions", [{ name: "f", parameters: {} }]],
      ["function_call", "auto"],
      ["logit_bias", { "50256": -100 }],
      ["suffix", "the end"],
      ["best_of", 3],
      ["echo", true],
    ];
    for (const [param, value] of refused) {
      // Tools are for chat completions (rendered through the chat template), not text ones.
      const path = ["suffix", "best_of", "echo", "tools"].includes(param) ? "/v1/completions" : "/v1/chat/completions";
      const base = path === "/v1/completions" ? { prompt: "Hi" } : { messages: [{ role: "user", content: "Hi" }] };
      const r = await post(server.url, path, { ...base, max_tokens: 1, [param]: value });
      const body = await r.json();
      assert.equal(r.status, 400, `${param}: ${JSON.stringify(body)}`);
      assert.equal(body.error.param, param);
      assert.equal(body.error.code, "unsupported_parameter");
      assert.match(body.error.message, new RegExp(param));
    }
    // No-op values of those parameters, and fields clients send harmlessly.
    const accepted = await post(server.url, "/v1/chat/completions", {
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 1,
      logprobs: false,
      n: 1,
      tools: [],
      response_format: { type: "text" },
      logit_bias: {},
      user: "someone",
      metadata: { purpose: "test" },
      store: false,
      stream_options: null,
    });
    assert.equal(accepted.status, 200, await accepted.clone().text());
    await accepted.body?.cancel();
    const completion = await post(server.url, "/v1/completions", {
      prompt: "Hi",
      max_tokens: 1,
      echo: false,
      best_of: 1,
      suffix: "",
      logprobs: null,
    });
    assert.equal(completion.status, 200, await completion.clone().text());
    await completion.body?.cancel();

    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const messages = [{ role: "user" as const, content: "Hi" }];
    await assert.rejects(
      client.chat.completions.create({
        model: MODEL_ID,
        messages,
        tools: [{ type: "function", function: { name: "look up", parameters: { type: "object" } } }],
      }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === "tools[0].function.name",
    );
    await assert.rejects(
      client.chat.completions.create({ model: MODEL_ID, messages, top_logprobs: 2 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === "top_logprobs" && /needs logprobs: true/.test(e.message),
    );
    const ok = await client.chat.completions.create({
      model: MODEL_ID,
      messages,
      max_tokens: 2,
      user: "someone",
      store: false,
      metadata: { purpose: "test" },
    });
    assert.equal(ok.choices.length, 1);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test("server: /metrics gives every unknown path one label", async () => {
  const server = await startServer(ARGS);
  try {
    for (const path of ["/random-a", "/random-b", "/v1/../etc", "/%7Bx%7D"]) {
      const r = await fetch(`${server.url}${path}`);
      assert.equal(r.status, 404);
      await r.body?.cancel();
    }
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.ok(!metrics.includes("random"), metrics);
    assert.match(metrics, /^llm_requests_total\{endpoint="other",status="404"\} 4$/m);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

/** Sends one GET with a chosen Host over raw TCP and returns the status and body. */
async function getWithHost(url: string, path: string, host: string): Promise<{ status: number; raw: string }> {
  const c = await rawConnection(url);
  try {
    await c.send(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`);
    const raw = await c.response();
    return { status: statusOf(raw), raw };
  } finally {
    c.close();
  }
}

Deno.test("server: bound to loopback, a foreign Host gets 403 (DNS rebinding) unless --allowed-host names it", async () => {
  const server = await startServer([...ARGS, "--allowed-host", "my.box"]);
  const port = new URL(server.url).port;
  try {
    for (const host of ["evil.example", `evil.example:${port}`, "127.0.0.1.evil.example", "localhost.evil.example"]) {
      for (const path of ["/v1/models", "/health"]) {
        const { status, raw } = await getWithHost(server.url, path, host);
        assert.equal(status, 403, `${host} ${path}`);
        assert.match(raw, /"code":"host_not_allowed"/);
        assert.match(raw, /--allowed-host/);
      }
    }
    for (
      const host of [
        `localhost:${port}`,
        "LOCALHOST",
        `127.0.0.1:${port}`,
        "127.8.9.10",
        `[::1]:${port}`,
        "my.box",
        "My.Box:80",
      ]
    ) {
      assert.equal((await getWithHost(server.url, "/v1/models", host)).status, 200, host);
    }
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
  // Bound to every address, the guard is off: the server is meant to be reached by name.
  const open = await startServer([...ARGS, "--host", "0.0.0.0"]);
  try {
    const url = open.url.replace("0.0.0.0", "127.0.0.1");
    assert.equal((await getWithHost(url, "/v1/models", "evil.example")).status, 200);
  } finally {
    assert.equal((await open.stop()).code, 0);
  }
});
