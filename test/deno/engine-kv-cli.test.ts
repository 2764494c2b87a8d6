/**
 * The KV pool through the CLI (issue 15): `--kv-budget` and `--context` reach the engine and
 * are reported by `inspect --load` and `bench`; a budget too small is refused naming the
 * flag; `chat` reuses the conversation's pages on its second turn. Expected figures are
 * derived, not written down: the page count from the budget and the model's shape
 * (K and V, every layer, f32 on the CPU runner), and the chat's reuse from the engine run
 * in this process on the same two turns.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadEngine } from "../../src/engine/engine.ts";
import type { ChatMessage } from "../../src/engine/types.ts";
import { BACKENDS } from "./support/backends.ts";
import { cli } from "./support/cli-process.ts";

const MODEL = fileURLToPath(new URL("../../models/tiny-fortunes-q8_0.gguf", import.meta.url));
const backend = BACKENDS.at(-1)!; // the most real backend available here
const BACKEND_ARGS = ["--backend", backend.options.backend ?? "webgpu", ...(backend.options.webgpu ? ["--webgpu", backend.options.webgpu] : [])];

Deno.test("engine-kv-cli: inspect --load and bench report the pool that --kv-budget and --context ask for", async () => {
  const args = ["--model", MODEL, "--backend", "cpu", "--kv-budget", "1", "--context", "128"];
  const inspected = await cli(["inspect", ...args, "--load", "--json"]);
  assert.equal(inspected.code, 0, inspected.stderr);
  const summary = JSON.parse(inspected.stdout);
  const c = summary.config;
  const pool = summary.runtime.kvPool;
  const pageBytes = 2 * c.nLayers * pool.pageSize * c.nKvHeads * c.headDim * 4;
  assert.equal(pool.pageCount, Math.floor(2 ** 20 / pageBytes));
  assert.equal(pool.bytes, pool.pageCount * pageBytes);
  assert.equal(summary.runtime.contextLength, 128);
  const text = await cli(["inspect", ...args, "--load"]);
  assert.match(text.stdout, new RegExp(`KV pool: +1\\.00 MiB in ${pool.pageCount} pages of ${pool.pageSize} positions`));
  assert.match(text.stdout, /context: +128 tokens per sequence/);

  const bench = await cli(["bench", ...args, "--json", "--prompt-tokens", "8", "--gen-tokens", "4", "--repetitions", "1"]);
  assert.equal(bench.code, 0, bench.stderr);
  const figures = JSON.parse(bench.stdout);
  assert.equal(figures.kv_pool_bytes, pool.bytes);
  assert.equal(figures.kv_pages, pool.pageCount);
  assert.equal(figures.context, 128);
});

Deno.test("engine-kv-cli: a KV budget too small for one page is refused naming --kv-budget", async () => {
  const r = await cli(["generate", "--model", MODEL, "--backend", "cpu", "--kv-budget", "0.001", "--prompt", "Hello"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--kv-budget/);
});

Deno.test(`engine-kv-cli[${backend.name}]: chat's second turn computes only its new tokens`, async () => {
  const lines = ["Tell me a fortune about the sea.", "And one about the stars."];
  const r = await cli(["chat", "--model", MODEL, ...BACKEND_ARGS, "--stats", "--temperature", "0", "--max-tokens", "24"], lines.join("\n") + "\n");
  assert.equal(r.code, 0, r.stderr);
  const stats = [...r.stderr.matchAll(/\[prompt (\d+) tokens, (\d+) reused, (\d+) computed/g)].map((m) => m.slice(1).map(Number));
  assert.equal(stats.length, 2, r.stderr);

  // The same two turns on an engine here: what the chat command must have reused.
  const engine = await loadEngine(MODEL, backend.options);
  try {
    const history: ChatMessage[] = [{ role: "user", content: lines[0]! }];
    const r1 = await engine.generate(history, { temperature: 0, maxTokens: 24 }).result;
    history.push({ role: "assistant", content: r1.text }, { role: "user", content: lines[1]! });
    const r2 = await engine.generate(history, { temperature: 0, maxTokens: 24 }).result;
    assert.deepEqual(stats[0], [r1.usage.promptTokens, 0, r1.usage.promptTokens]);
    assert.deepEqual(stats[1], [r2.usage.promptTokens, r2.usage.cachedTokens, r2.usage.promptTokens - r2.usage.cachedTokens]);
    const ps = engine.kvPool.pageSize;
    assert.ok(r2.usage.cachedTokens >= Math.floor(r1.usage.promptTokens / ps) * ps, "the first turn's prompt is reused");
  } finally {
    await engine.dispose();
  }
});
