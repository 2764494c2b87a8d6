/**
 * The OpenAI-compatible HTTP API as one web-standard handler, `(Request) => Response`:
 * Deno.serve runs it, tests call it over real HTTP. It keeps no state between requests
 * besides counters, so several servers can sit behind an ordinary load balancer.
 */
import type { Engine } from "../engine/engine.ts";
import { EngineDisposedError, EngineFailedError, InvalidRequestError, RequestAbortedError } from "../engine/errors.ts";
import type { GenerationResult } from "../engine/types.ts";
import { HttpError } from "./errors.ts";
import { ServerMetrics } from "./metrics.ts";
import { chunkJson, completionId, completionJson, parseCompletionRequest, usageJson } from "./openai.ts";

/** How the handler behaves. */
export interface ServerOptions {
  /** The id `/v1/models` lists and responses carry; requests naming another get 404. */
  readonly modelId: string;
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

/** Reads a JSON body, refusing more than `limit` bytes without reading them all. */
async function readJsonBody(request: Request, limit: number): Promise<unknown> {
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
    const { value, done } = await reader.read();
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

export function createHandler(engine: Engine, options: ServerOptions): ServerHandler {
  const metrics = new ServerMetrics();
  const maxBody = options.maxBodyBytes ?? 1 << 20;
  const maxConcurrency = options.maxConcurrency ?? 64;

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

  async function authorize(request: Request): Promise<void> {
    if (options.apiKey === undefined) return;
    const header = request.headers.get("authorization") ?? "";
    const given = header.startsWith("Bearer ") ? header.slice(7) : "";
    if (!(await sameSecret(given, options.apiKey))) {
      throw new HttpError(401, "a valid API key is required: Authorization: Bearer KEY", {
        type: "authentication_error",
        code: "invalid_api_key",
      });
    }
  }

  async function completions(request: Request, kind: "chat" | "text"): Promise<Response> {
    if (metrics.inFlight >= maxConcurrency) {
      throw new HttpError(429, `the server is busy (${metrics.inFlight} requests in flight); retry shortly`, {
        type: "rate_limit_error",
        code: "queue_full",
        headers: { "retry-after": "1" },
      });
    }
    const parsed = parseCompletionRequest(kind, await readJsonBody(request, maxBody));
    if (parsed.model !== undefined && parsed.model !== options.modelId) {
      throw new HttpError(404, `the model "${parsed.model}" does not exist; this server serves "${options.modelId}"`, {
        param: "model",
        code: "model_not_found",
      });
    }
    const cancel = new AbortController();
    const signals = [request.signal, cancel.signal, ...(options.cancelAll ? [options.cancelAll] : [])];
    const stream = engine.generate(parsed.input, { ...parsed.options, signal: AbortSignal.any(signals) });
    const id = completionId(kind);
    const created = Math.floor(Date.now() / 1000);
    metrics.inFlight++;
    const settled = stream.result.then(
      (r) => record(r),
      (e) => {
        if (e instanceof RequestAbortedError) metrics.cancelled++;
      },
    ).finally(() => metrics.inFlight--);
    settled.catch(() => {});

    if (!parsed.stream) {
      const result = await stream.result;
      return json(200, completionJson(kind, id, options.modelId, created, result));
    }

    const encoder = new TextEncoder();
    const sse = (data: unknown) =>
      encoder.encode(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        try {
          if (kind === "chat") {
            controller.enqueue(
              sse(chunkJson(kind, id, options.modelId, created, { role: "assistant", text: "" }, null)),
            );
          }
          for await (const chunk of stream) {
            if (chunk.text.length > 0) {
              controller.enqueue(sse(chunkJson(kind, id, options.modelId, created, { text: chunk.text }, null)));
            }
            if (chunk.finishReason) {
              controller.enqueue(sse(chunkJson(kind, id, options.modelId, created, {}, chunk.finishReason)));
            }
          }
          const result = await stream.result;
          if (parsed.includeUsage) {
            controller.enqueue(
              sse({
                id,
                object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
                created,
                model: options.modelId,
                choices: [],
                usage: usageJson(result),
              }),
            );
          }
          controller.enqueue(sse("[DONE]"));
          controller.close();
        } catch (e) {
          if (e instanceof RequestAbortedError && request.signal.aborted) return; // the client is gone
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

  async function route(request: Request, path: string): Promise<Response> {
    const method = request.method;
    if (path === "/health" && method === "GET") return json(200, { status: "ok" });
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
        data: [{ id: options.modelId, object: "model", created: 0, owned_by: "webgpu-llm" }],
      });
    }
    if (path === "/v1/chat/completions" && method === "POST") return await completions(request, "chat");
    if (path === "/v1/completions" && method === "POST") return await completions(request, "text");
    const known = ["/health", "/ready", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions"];
    if (known.includes(path)) {
      throw new HttpError(405, `${method} is not allowed on ${path}`, { code: "method_not_allowed" });
    }
    throw new HttpError(404, `no such endpoint: ${method} ${path}`, { code: "not_found" });
  }

  const handler = async (request: Request): Promise<Response> => {
    const path = new URL(request.url).pathname;
    const cors = corsHeaders(request);
    if (request.method === "OPTIONS") return new Response(null, { status: 204, headers: cors });
    let response: Response;
    try {
      response = await route(request, path);
    } catch (e) {
      const error = httpErrorOf(e);
      response = json(error.status, error.body(), error.headers);
    }
    metrics.countRequest(path, response.status);
    for (const [k, v] of Object.entries(cors)) response.headers.set(k, v);
    return response;
  };
  return Object.assign(handler, { metrics });
}
