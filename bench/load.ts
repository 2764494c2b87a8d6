/**
 * Load script (not a test): requests per second and time to first token at 1, 8 and 32
 * concurrent streaming clients against a real server process.
 *
 *   deno run -A bench/load.ts [--model PATH] [--backend webgpu|cpu] [--requests-per-client 4] [--max-tokens 32]
 *   deno run -A bench/load.ts --url http://127.0.0.1:8080   # an already running server
 */
import { parseArgs } from "../src/cli/args.ts";
import { startServer } from "../test/deno/support/server-process.ts";

const parsed = parseArgs(Deno.args, {
  name: "load",
  summary: "Measures requests/s and time to first token at several concurrency levels.",
  flags: {
    url: { type: "string", placeholder: "url", description: "a running server (default: start one)" },
    model: { type: "string", placeholder: "path", description: "model for the server started here (default: the embedded one)" },
    backend: { type: "string", default: "webgpu", placeholder: "webgpu|cpu", description: "backend of the server started here" },
    concurrency: { type: "strings", placeholder: "n", description: "concurrency levels (default 1, 8, 32)" },
    requestsPerClient: { type: "number", integer: true, min: 1, default: 4, placeholder: "n", description: "requests each client sends" },
    maxTokens: { type: "number", integer: true, min: 1, default: 32, placeholder: "n", description: "tokens per request" },
    json: { type: "boolean", description: "print JSON only" },
  },
});
if (parsed.help) {
  console.log(parsed.text);
  Deno.exit(0);
}
const f = parsed.flags;
const levels = f.concurrency.length > 0 ? f.concurrency.map(Number) : [1, 8, 32];

const server = f.url ? undefined : await startServer([
  ...(f.model ? ["--model", f.model] : []),
  "--backend",
  f.backend,
  "--max-sequences",
  String(Math.max(...levels)),
]);
const base = f.url ?? server!.url;

/** One streaming request; resolves with its time to first token and total time (ms). */
async function oneRequest(i: number): Promise<{ ttft: number; total: number; tokens: number }> {
  const start = performance.now();
  const response = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: `Fortune ${i}:`, max_tokens: f.maxTokens, stream: true, ignore_eos: true, stream_options: { include_usage: true } }),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let ttft = 0;
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    if (ttft === 0 && text.includes('"text":"') && !text.includes('"text":""')) ttft = performance.now() - start;
  }
  const usage = /"completion_tokens":(\d+)/.exec(text);
  return { ttft: ttft || performance.now() - start, total: performance.now() - start, tokens: usage ? Number(usage[1]) : 0 };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const results = [];
await oneRequest(-1); // warm-up: pipelines compiled, caches filled
for (const clients of levels) {
  const start = performance.now();
  const samples = (await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const mine = [];
      for (let r = 0; r < f.requestsPerClient; r++) mine.push(await oneRequest(c * 1000 + r));
      return mine;
    }),
  )).flat();
  const seconds = (performance.now() - start) / 1000;
  const ttfts = samples.map((s) => s.ttft).sort((a, b) => a - b);
  const tokens = samples.reduce((n, s) => n + s.tokens, 0);
  results.push({
    clients,
    requests: samples.length,
    requests_per_s: samples.length / seconds,
    tokens_per_s: tokens / seconds,
    ttft_p50_ms: percentile(ttfts, 50),
    ttft_p99_ms: percentile(ttfts, 99),
  });
}
await server?.stop("SIGTERM");

if (f.json) console.log(JSON.stringify(results));
else {
  console.log(`server: ${base}  max_tokens: ${f.maxTokens}`);
  console.log("clients  requests  req/s    tok/s    ttft p50 ms  ttft p99 ms");
  for (const r of results) {
    console.log(
      `${String(r.clients).padStart(7)}  ${String(r.requests).padStart(8)}  ${r.requests_per_s.toFixed(2).padStart(6)}  ` +
        `${r.tokens_per_s.toFixed(1).padStart(7)}  ${r.ttft_p50_ms.toFixed(1).padStart(11)}  ${r.ttft_p99_ms.toFixed(1).padStart(11)}`,
    );
  }
}
