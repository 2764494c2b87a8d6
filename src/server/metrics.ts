/** Server counters, exposed at `GET /metrics` in Prometheus' text format. */
import type { Engine } from "../engine/engine.ts";

export class ServerMetrics {
  readonly #requests = new Map<string, number>(); // "endpoint status" → count
  promptTokens = 0;
  completionTokens = 0;
  /** Requests being handled now (queued in the engine or generating). */
  inFlight = 0;
  cancelled = 0;
  #ttftSum = 0;
  #ttftCount = 0;
  #decodeTokens = 0;
  #decodeSeconds = 0;

  countRequest(endpoint: string, status: number): void {
    const key = `${endpoint} ${status}`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  observeGeneration(ttftMs: number, decodeTokens: number, decodeMs: number): void {
    this.#ttftSum += ttftMs / 1000;
    this.#ttftCount++;
    this.#decodeTokens += decodeTokens;
    this.#decodeSeconds += decodeMs / 1000;
  }

  /** The exposition text. */
  render(engine: Engine): string {
    const stats = engine.stats();
    const memory = engine.memory();
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: Array<[string, number]>) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
    };
    metric(
      "llm_requests_total",
      "counter",
      "HTTP requests by endpoint and status.",
      [...this.#requests].map(([key, n]) => {
        const [endpoint, status] = key.split(" ");
        return [`{endpoint="${endpoint}",status="${status}"}`, n];
      }),
    );
    metric("llm_prompt_tokens_total", "counter", "Prompt tokens processed.", [["", this.promptTokens]]);
    metric("llm_completion_tokens_total", "counter", "Tokens generated.", [["", this.completionTokens]]);
    metric("llm_requests_cancelled_total", "counter", "Requests cancelled by a client disconnect or shutdown.", [[
      "",
      this.cancelled,
    ]]);
    metric("llm_requests_in_flight", "gauge", "Completion requests being served.", [["", this.inFlight]]);
    metric("llm_queue_depth", "gauge", "Requests waiting for a sequence slot.", [["", stats.queued]]);
    metric("llm_active_sequences", "gauge", "Sequences generating now.", [["", stats.active]]);
    metric("llm_free_slots", "gauge", "KV-cache slots free.", [["", stats.freeSlots]]);
    metric("llm_time_to_first_token_seconds", "summary", "Time from request to first token.", [
      ["_sum", this.#ttftSum],
      ["_count", this.#ttftCount],
    ]);
    metric("llm_decode_tokens_per_second", "gauge", "Mean decode speed per request over all requests served.", [
      ["", this.#decodeSeconds > 0 ? this.#decodeTokens / this.#decodeSeconds : 0],
    ]);
    metric("llm_gpu_bytes", "gauge", "GPU memory held by the engine's buffers.", [["", memory.liveBytes]]);
    metric("llm_gpu_buffers", "gauge", "GPU buffers held by the engine.", [["", memory.liveBuffers]]);
    metric("llm_engine_ready", "gauge", "1 when the model is loaded and serving.", [[
      "",
      stats.state === "ready" ? 1 : 0,
    ]]);
    return lines.join("\n") + "\n";
  }
}
