/**
 * The OpenAI-compatible HTTP API as one web-standard handler, `(Request) => Response`:
 * Deno.serve runs it, tests call it over real HTTP. It keeps no state between requests
 * besides counters, so several servers can sit behind an ordinary load balancer.
 */
import type { Engine } from "../engine/engine.ts";
import { EngineDisposedError, EngineFailedError, InvalidRequestError, RequestAbortedError } from "../engine/errors.ts";
import type { FinishReason, GenerationResult } from "../engine/types.ts";
import { InvalidArgumentError } from "../errors.ts";
import { withTimeout } from "../timeout.ts";
import { HttpError } from "./errors.ts";
import {
  detokenizeJson,
  parseDetokenizeRequest,
  parseTokenizeRequest,
  propsJson,
  tokenizeJson,
} from "./llamacpp-api.ts";
import { ServerMetrics } from "./metrics.ts";
import { embeddingsResponse } from "./embeddings.ts";
import { chunkJson, completionId, completionJson, parseCompletionRequest, usageJson } from "./openai.ts";

/** How the handler behaves. */
export interface ServerOptions {
  /** The id `/v1/models` lists and responses carry; requests naming another get 404. */
  readonly modelId: string;
  /** Where the model was loaded from, for `/props` (`model_path`; a URL without credentials or query). */
  readonly modelPath?: string;
  /** With a key, every endpoint but `/health` needs `Authorization: Bearer KEY`. */
  readonly apiKey?: string;
  /** Origins allowed by CORS; none (the default) sends no CORS headers. `*` allows any. */
  readonly allowedOrigins?: readonly string[];
  /** Largest request body in bytes (default 1 MiB); larger gets 413. */
  readonly maxBodyBytes?: number;
  /** Completion requests handled at once, queued ones included; more get 429 (default 64). */
  readonly maxConcurrency?: number;
  /** Aborting it cancels every running generation (the end of a shutdown's grace period). */
  readonly cancelAll?: AbortSignal;
  /**
   * Longest pause in milliseconds between two chunks of a request body (default 30 s); a
   * client that stops sending mid-body gets 408 and its admission slot back.
   */
  readonly bodyTimeoutMs?: number;
  /**
   * The DNS-rebinding guard. When set, requests are served only if their `Host` names a
   * loopback address (`localhost`, `127.x.x.x`, `[::1]`, any port) or one of these names;
   * any other gets 403. `serveUntilSignal` sets it when bound to a loopback address: a web
   * page whose own name resolves to 127.0.0.1 must not be able to read this server.
   */
  readonly allowedHosts?: readonly string[];
}

/** A handler, with its counters for `/metrics` and tests. */
export interface ServerHandler {
  (request: Request): Promise<Response>;
  readonly metrics: ServerMetrics;
}

const JSON_HEADERS = { "content-type": "application/json" };

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...JSON_HEADERS, ...headers } });
}

/** Compares secrets in time independent of where they differ (both hashed to equal length). */
async function sameSecret(a: string, b: string): Promise<boolean> {
  const enc = new TextEncoder();
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", enc.encode(a)),
    crypto.subtle.digest("SHA-256", enc.encode(b)),
  ]);
  const x = new Uint8Array(ha);
  const y = new Uint8Array(hb);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}

/** A 408 for a body whose client went quiet. */
function bodyTimeoutError(timeoutMs: number): HttpError {
  return new HttpError(408, `the request body stalled: no data for ${timeoutMs / 1000} s`, {
    code: "request_timeout",
    headers: { connection: "close" },
  });
}

/**
 * One read of a body stream, bounded: if no chunk arrives within `timeoutMs`, the read is
 * cancelled and a 408 thrown. The timer is a bound on a client's silence, not a wait.
 */
async function readChunk(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  timeoutMs: number,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  try {
    return await withTimeout(reader.read(), timeoutMs, () => bodyTimeoutError(timeoutMs));
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  }
}

/**
 * Reads a JSON body, refusing more than `limit` bytes without reading them all, and
 * giving up (408) when the client pauses longer than `timeoutMs` between chunks.
 */
async function readJsonBody(request: Request, limit: number, timeoutMs: number): Promise<unknown> {
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    throw new HttpError(413, `the request body is ${declared} bytes; the limit is ${limit}`, {
      code: "body_too_large",
    });
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body?.getReader();
  while (reader) {
    const { value, done } = await readChunk(reader, timeoutMs);
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new HttpError(413, `the request body exceeds the limit of ${limit} bytes`, { code: "body_too_large" });
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new HttpError(400, `the request body is not valid JSON: ${(e as Error).message}`, { code: "invalid_json" });
  }
}

/** The name part of a `Host` header, lower-cased, without its port (`[::1]:80` → `[::1]`). */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const colon = h.indexOf(":");
  return colon < 0 ? h : h.slice(0, colon);
}

/** Whether a host name (as {@link hostName} gives it) is a loopback name or address. */
export function isLoopbackHost(name: string): boolean {
  return name === "localhost" || name.endsWith(".localhost") || name === "[::1]" || name === "::1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** The paths the server answers; every other path shares one metrics label. */
const KNOWN_PATHS = [
  "/health",
  "/ready",
  "/metrics",
  "/v1/models",
  "/v1/chat/completions",
  "/v1/completions",
  "/tokenize",
  "/detokenize",
  "/props",
  "/v1/embeddings",
];

/** Maps an engine error to the HTTP error a client should see. */
function httpErrorOf(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof InvalidRequestError) {
    const code = error.code === "PROMPT_TOO_LONG" ? "context_length_exceeded" : "invalid_value";
    return new HttpError(400, error.message, { param: error.param, code });
  }
  if (error instanceof EngineDisposedError) {
    return new HttpError(503, "the server is shutting down", { code: "shutting_down" });
  }
  if (error instanceof EngineFailedError) return new HttpError(503, error.message, { code: "engine_failed" });
  if (error instanceof RequestAbortedError) {
    return new HttpError(499, "the request was cancelled", { code: "cancelled" });
  }
  return new HttpError(500, `internal error: ${error instanceof Error ? error.message : String(error)}`);
}

/** The `Authorization` header's bearer token; the scheme is case-insensitive (RFC 7235). */
function bearerToken(header: string | null): string {
  const m = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(header?.trim() ?? "");
  return m ? m[1]! : "";
}

/** Builds the handler; throws InvalidArgumentError for options that cannot be served safely. */
export function createHandler(engine: Engine, options: ServerOptions): ServerHandler {
  if (options.apiKey !== undefined && options.apiKey.trim() === "") {
    // An empty key (an unset $KEY expanded to "") must not switch authentication off silently.
    throw new InvalidArgumentError("apiKey", "is empty; give a non-empty key, or none to serve without one");
  }
  const metrics = new ServerMetrics();
  const maxBody = options.maxBodyBytes ?? 1 << 20;
  const maxConcurrency = options.maxConcurrency ?? 64;
  const bodyTimeoutMs = options.bodyTimeoutMs ?? 30_000;
  const allowedHosts = options.allowedHosts?.map(hostName);

  function corsHeaders(request: Request): Record<string, string> {
    const origin = request.headers.get("origin");
    const allowed = options.allowedOrigins ?? [];
    if (!origin || !(allowed.includes("*") || allowed.includes(origin))) return {};
    return {
      "access-control-allow-origin": allowed.includes("*") ? "*" : origin,
      "access-control-allow-headers": "authorization, content-type",
      "access-control-allow-methods": "GET, POST, OPTIONS",
      vary: "origin",
    };
  }

  /** The DNS-rebinding guard (see {@link ServerOptions.allowedHosts}). */
  function checkHost(request: Request): void {
    if (!allowedHosts) return;
    const host = request.headers.get("host");
    if (host === null) return; // HTTP/1.0 without Host: no browser sends that
    const name = hostName(host);
    if (isLoopbackHost(name) || allowedHosts.includes(name)) return;
    throw new HttpError(
      403,
      `the Host "${host}" is not allowed: this server is bound to a loopback address and serves only ` +
        `localhost, 127.x.x.x and [::1]; add a name with --allowed-host`,
      { type: "permission_error", code: "host_not_allowed" },
    );
  }

  async function authorize(request: Request): Promise<void> {
    if (options.apiKey === undefined) return;
    if (!(await sameSecret(bearerToken(request.headers.get("authorization")), options.apiKey))) {
      throw new HttpError(401, "a valid API key is required: Authorization: Bearer KEY", {
        type: "authentication_error",
        code: "invalid_api_key",
      });
    }
  }

  /**
   * Admits a completion request before its body is read, so that requests still sending
   * their bodies count against `maxConcurrency`. Returns the release, safe to call twice.
   */
  function admit(): () => void {
    if (metrics.inFlight >= maxConcurrency) {
      throw new HttpError(429, `the server is busy (${metrics.inFlight} requests in flight); retry shortly`, {
        type: "rate_limit_error",
        code: "queue_full",
        headers: { "retry-after": "1" },
      });
    }
    metrics.inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      metrics.inFlight--;
    };
  }

  async function completions(request: Request, kind: "chat" | "text"): Promise<Response> {
    const release = admit();
    try {
      return await admittedCompletion(request, kind, release);
    } catch (e) {
      release();
      throw e;
    }
  }

  /** The rest of a completion once admitted; `release` runs when its generation settles. */
  async function admittedCompletion(request: Request, kind: "chat" | "text", release: () => void): Promise<Response> {
    const parsed = parseCompletionRequest(kind, await readJsonBody(request, maxBody, bodyTimeoutMs));
    if (parsed.model !== undefined && parsed.model !== options.modelId) {
      throw new HttpError(404, `the model "${parsed.model}" does not exist; this server serves "${options.modelId}"`, {
        param: "model",
        code: "model_not_found",
      });
    }
    const cancel = new AbortController();
    // request.signal aborts only when the client goes away (deno.json opts in to Deno's
    // `no-legacy-abort`); a streamed response's cancel() below covers the same for streams.
    const signals = [request.signal, cancel.signal, ...(options.cancelAll ? [options.cancelAll] : [])];
    const stream = engine.generate(parsed.input, { ...parsed.options, signal: AbortSignal.any(signals) });
    const id = completionId(kind);
    const created = Math.floor(Date.now() / 1000);
    stream.result.then(
      (r) => record(r),
      (e) => {
        if (e instanceof RequestAbortedError) metrics.cancelled++;
      },
    ).finally(release);

    if (!parsed.stream) {
      const result = await stream.result;
      return json(200, completionJson(kind, id, options.modelId, created, result));
    }

    // The first event settles what the engine validates once the model can tokenize (the
    // prompt's length against the context): its error is a 4xx here, like a non-streamed
    // request's, not an error event after a 200.
    const events = stream[Symbol.asyncIterator]();
    const first = await events.next();
    const sse = sseEncoder();
    const chunkOf = (delta: Parameters<typeof chunkJson>[4], finish: FinishReason | null, index: number) =>
      sse(chunkJson(kind, id, options.modelId, created, delta, finish, index));
    const choices = parsed.options.n ?? 1;
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        try {
          for (let i = 0; kind === "chat" && i < choices; i++) {
            controller.enqueue(chunkOf({ role: "assistant", text: "" }, null, i));
          }
          // Completions' text_offset counts from the start of each choice's text.
          const textOffsets = new Map<number, number>();
          for (let next = first; !next.done; next = await events.next()) {
            const chunk = next.value;
            if (chunk.logprobs) {
              // A token whose text is held back (a partial character, a possible stop) still brings its logprobs.
              const textOffset = textOffsets.get(chunk.index) ?? 0;
              controller.enqueue(chunkOf({ text: chunk.text, logprobs: chunk.logprobs, textOffset }, null, chunk.index));
              textOffsets.set(chunk.index, textOffset + chunk.logprobs.reduce((n, l) => n + l.text.length, 0));
            } else if (chunk.text.length > 0) controller.enqueue(chunkOf({ text: chunk.text }, null, chunk.index));
            if (chunk.toolCalls) controller.enqueue(chunkOf({ toolCalls: chunk.toolCalls }, null, chunk.index));
            if (chunk.finishReason) controller.enqueue(chunkOf({}, chunk.finishReason, chunk.index));
          }
          const result = await stream.result;
          if (parsed.includeUsage) {
            controller.enqueue(sse({
              id,
              object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
              created,
              model: options.modelId,
              choices: [],
              usage: usageJson(result),
            }));
          }
          controller.enqueue(sse("[DONE]"));
          controller.close();
        } catch (e) {
          const clientGone = cancel.signal.aborted || request.signal.aborted;
          if (e instanceof RequestAbortedError && clientGone) return;
          try {
            controller.enqueue(sse(httpErrorOf(e).body()));
            controller.enqueue(sse("[DONE]"));
            controller.close();
          } catch {
            // The stream was already cancelled by the client.
          }
        }
      },
      cancel() {
        cancel.abort();
      },
    });
    return new Response(body, {
      status: 200,
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" },
    });
  }

  function record(r: GenerationResult): void {
    metrics.promptTokens += r.usage.promptTokens;
    metrics.completionTokens += r.usage.completionTokens;
    metrics.observeGeneration(
      r.timings.timeToFirstTokenMs,
      Math.max(0, r.usage.completionTokens - 1),
      r.timings.decodeMs,
    );
  }

  /** Liveness: 200 while loading or ready, 503 with the state once the engine failed or was disposed. */
  function health(): Response {
    const state = engine.state;
    if (state === "ready") return json(200, { status: "ok" });
    if (state === "loading") return json(200, { status: "loading" });
    return json(503, { status: state });
  }

  /**
   * The engine once its model is loaded: a request that comes during the load waits for
   * it, as completions queue until then. A failed load rejects with its error; a disposed
   * engine's getters throw EngineDisposedError, which {@link httpErrorOf} makes a 503.
   */
  async function loadedEngine(): Promise<Engine> {
    await engine.ready;
    return engine;
  }

  /** llama.cpp's `POST /tokenize`, `POST /detokenize` and `GET /props`; undefined for other requests. */
  async function llamaCppRoute(request: Request, path: string): Promise<Response | undefined> {
    const method = request.method;
    if (path === "/props" && method === "GET") {
      return json(200, propsJson(await loadedEngine(), { modelId: options.modelId, modelPath: options.modelPath }));
    }
    if (path === "/tokenize" && method === "POST") {
      const tokenizer = (await loadedEngine()).tokenizer;
      const parsed = parseTokenizeRequest(await readJsonBody(request, maxBody, bodyTimeoutMs), tokenizer.vocabSize);
      return json(200, tokenizeJson(tokenizer, parsed));
    }
    if (path === "/detokenize" && method === "POST") {
      const tokenizer = (await loadedEngine()).tokenizer;
      const ids = parseDetokenizeRequest(await readJsonBody(request, maxBody, bodyTimeoutMs), tokenizer.vocabSize);
      return json(200, detokenizeJson(tokenizer, ids));
    }
    return undefined;
  }

  async function route(request: Request, path: string): Promise<Response> {
    const method = request.method;
    if (path === "/health" && method === "GET") return health();
    await authorize(request);
    if (path === "/ready" && method === "GET") {
      const ready = engine.state === "ready";
      return json(ready ? 200 : 503, { status: engine.state });
    }
    if (path === "/metrics" && method === "GET") {
      return new Response(metrics.render(engine), { headers: { "content-type": "text/plain; version=0.0.4" } });
    }
    if (path === "/v1/models" && method === "GET") {
      return json(200, {
        object: "list",
        data: [{ id: options.modelId, object: "model", created: 0, owned_by: "gguf-webgpu" }],
      });
    }
    if (path === "/v1/chat/completions" && method === "POST") return await completions(request, "chat");
    if (path === "/v1/completions" && method === "POST") return await completions(request, "text");
    if (path === "/v1/embeddings" && method === "POST") {
      const body = await readJsonBody(request, maxBody, bodyTimeoutMs);
      return json(200, await embeddingsResponse(await loadedEngine(), body, options.modelId, request.signal));
    }
    const llamaCpp = await llamaCppRoute(request, path);
    if (llamaCpp) return llamaCpp;
    if (KNOWN_PATHS.includes(path)) {
      throw new HttpError(405, `${method} is not allowed on ${path}`, { code: "method_not_allowed" });
    }
    throw new HttpError(404, `no such endpoint: ${method} ${path}`, { code: "not_found" });
  }

  const handler = async (request: Request): Promise<Response> => {
    const path = new URL(request.url).pathname;
    let response: Response;
    let cors: Record<string, string> = {};
    try {
      checkHost(request);
      cors = corsHeaders(request);
      response = request.method === "OPTIONS" ? new Response(null, { status: 204 }) : await route(request, path);
    } catch (e) {
      const error = httpErrorOf(e);
      response = json(error.status, error.body(), error.headers);
    }
    // Any path a client makes up shares one label, so /metrics cannot be grown without bound.
    metrics.countRequest(KNOWN_PATHS.includes(path) ? path : "other", response.status);
    for (const [k, v] of Object.entries(cors)) response.headers.set(k, v);
    return response;
  };
  return Object.assign(handler, { metrics });
}

/** Encodes one server-sent event: `data: JSON` (or a literal string such as `[DONE]`). */
function sseEncoder(): (data: unknown) => Uint8Array {
  const encoder = new TextEncoder();
  return (data) => encoder.encode(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
}
