/**
 * The engine over a KV pool smaller than slots × context (issue 15), on every backend that
 * runs here. Expected outputs are never written by hand: they come from an engine with
 * the prefix cache off and one sequence at a time (nothing shared, nothing preempted), and
 * expected counts (reused tokens) from the definition: the longest common prefix of the
 * new prompt and what an earlier sequence held, in whole pages, leaving the last prompt
 * token to compute. Keys and values are kept in f32 (see `base`).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { type Engine, type EngineOptions, loadEngine } from "../../src/engine/engine.ts";
import { InvalidRequestError } from "../../src/engine/errors.ts";
import { choiceSeed } from "../../src/engine/options.ts";
import type { GenerateOptions, GenerationResult } from "../../src/engine/types.ts";
import { BACKENDS } from "./support/backends.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const CHAT_MODEL = fileURLToPath(new URL("../../models/tiny-fortunes-q8_0.gguf", import.meta.url));
const GREEDY: GenerateOptions = { temperature: 0, maxTokens: 12, ignoreEos: true };
/** Seeded, with a repeat penalty: a resumed sequence must have its whole history back. */
const SEEDED: GenerateOptions = { temperature: 1, topK: 0, topP: 1, minP: 0, repeatPenalty: 1.3, seed: 5, ignoreEos: true };

/** Deterministic token prompts over the synthetic model's vocabulary (ids 3…999). */
function tokenPrompt(seed: number, length: number): { tokens: number[] } {
  let x = seed * 2654435761 >>> 0;
  const tokens: number[] = [];
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    tokens.push(3 + (x % 997));
  }
  return { tokens };
}

async function withEngine<T>(model: string, options: EngineOptions, body: (engine: Engine) => Promise<T>): Promise<T> {
  const engine = await loadEngine(model, options);
  try {
    return await body(engine);
  } finally {
    await engine.dispose();
  }
}

/**
 * Bytes of one KV page on this backend (K and V, every layer) when a budget is given: a
 * runner may store a budgeted pool in another element type (f16 to get more pages) than
 * its default pool, so this reads it off an engine with a small budget.
 */
async function pageBytes(model: string, options: EngineOptions): Promise<number> {
  const defaultPage = await withEngine(model, { ...options, maxSequences: 1 }, (e) => Promise.resolve(e.kvPool.bytes / e.kvPool.pageCount));
  return await withEngine(model, { ...options, maxSequences: 1, kvCacheBytes: 4 * defaultPage }, (e) =>
    Promise.resolve(e.kvPool.bytes / e.kvPool.pageCount));
}

/**
 * Each input alone: no batching, no reuse, no preemption. Give it the same `kvCacheBytes`
 * as the engine under test, so that both store keys and values in the same element type.
 */
async function reference(model: string, options: EngineOptions, inputs: { tokens: number[] }[], o: GenerateOptions) {
  return await withEngine(model, { ...options, maxSequences: 1, prefixCache: false }, async (engine) => {
    const out: number[][] = [];
    for (const input of inputs) out.push([...(await engine.generate(input, o).result).tokens]);
    return out;
  });
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/** What the prefix cache can give `prompt` from a finished sequence that held `held`. */
function expectedReuse(prompt: readonly number[], held: readonly number[], pageSize: number): number {
  const shared = Math.min(commonPrefix(prompt, held), prompt.length - 1);
  return Math.floor(shared / pageSize) * pageSize;
}

for (const backend of BACKENDS) {
  // f32 keys and values: with f16 (what a budget gets by default on WebGPU), the last-bit
  // differences between batched and single-row matrix kernels can flip an f16 rounding, so
  // outputs across batch shapes are equal only nearly (the runner's suites check f16).
  const base: EngineOptions = { ...backend.options, maxSequences: 4, kvCacheType: "f32" };
  const name = (s: string) => `engine-kv[${backend.name}]: ${s}`;
  const tokens = backend.slow ? 24 : 80;

  Deno.test(name("a pool smaller than slots × context: batched outputs equal sequential ones, preempted ones too"), async () => {
    const page = await pageBytes(MODEL, base);
    const inputs = [0, 1, 2, 3, 4, 5].map((i) => tokenPrompt(i + 1, 5 + 7 * i));
    const options: GenerateOptions[] = [{ ...GREEDY, maxTokens: tokens }, { ...SEEDED, maxTokens: tokens }];
    for (const o of options) {
      const alone = await reference(MODEL, { ...base, kvCacheBytes: 6 * page }, inputs, o);
      // 6 pages: four sequences of up to 5 + 35 + 80 positions cannot all hold theirs at once.
      const engine = await loadEngine(MODEL, { ...base, kvCacheBytes: 6 * page });
      const pool = engine.kvPool;
      assert.equal(pool.pageCount, 6);
      assert.ok(pool.pageCount * pool.pageSize < base.maxSequences! * engine.limits.contextLength);
      const together = await Promise.all(inputs.map(async (input) => [...(await engine.generate(input, o).result).tokens]));
      assert.deepEqual(together, alone);
      if (!backend.slow) assert.ok(engine.kvStats().preemptions > 0, "the pool was too small for all at once");
      assert.equal(engine.kvStats().usedPages, 0);
      await engine.dispose();
      assert.deepEqual(engine.memory(), { liveBuffers: 0, liveBytes: 0 });
    }
  });

  Deno.test(name("reuse gives the same output as recomputing, greedy and seeded; cached tokens counted"), async () => {
    const system = tokenPrompt(7, 70).tokens;
    const inputs = [0, 1, 2].map((i) => ({ tokens: [...system, ...tokenPrompt(20 + i, 3 + i).tokens] }));
    for (const o of [{ ...GREEDY, maxTokens: 16 }, { ...SEEDED, maxTokens: 16 }]) {
      const alone = await reference(MODEL, base, inputs, o);
      await withEngine(MODEL, base, async (engine) => {
        const ps = engine.kvPool.pageSize;
        const results: GenerationResult[] = [];
        for (const input of inputs) results.push(await engine.generate(input, o).result);
        assert.deepEqual(results.map((r) => r.tokens), alone);
        assert.equal(results[0]!.usage.cachedTokens, 0);
        for (const r of results.slice(1)) {
          const held = [...results[0]!.promptTokens, ...results[0]!.tokens];
          assert.equal(r.usage.cachedTokens, expectedReuse(r.promptTokens, held, ps));
          assert.ok(r.usage.cachedTokens >= 64, `reused ${r.usage.cachedTokens}`);
        }
        const stats = engine.kvStats();
        const cached = results.reduce((n, r) => n + r.usage.cachedTokens, 0);
        assert.equal(stats.cachedTokens, cached);
        assert.equal(stats.prefilledTokens, results.reduce((n, r) => n + r.promptTokens.length, 0) - cached);
      });
    }
  });

  Deno.test(name("pages evicted and given to other prefixes are reused correctly"), async () => {
    const page = await pageBytes(MODEL, base);
    const a = tokenPrompt(31, 100).tokens;
    const b = tokenPrompt(32, 100).tokens;
    const inputs = [
      { tokens: a },
      { tokens: b }, // 6 pages: b's pages evict a's (least recently used)
      { tokens: [...b, 5, 6, 7] }, // reuses b's pages, which used to hold a
      { tokens: [...a, 8, 9] }, // a is gone: recomputed
    ];
    const alone = await reference(MODEL, { ...base, kvCacheBytes: 6 * page }, inputs, GREEDY);
    await withEngine(MODEL, { ...base, kvCacheBytes: 6 * page }, async (engine) => {
      const ps = engine.kvPool.pageSize;
      const results: GenerationResult[] = [];
      for (const input of inputs) results.push(await engine.generate(input, GREEDY).result);
      assert.deepEqual(results.map((r) => r.tokens), alone);
      assert.equal(results[2]!.usage.cachedTokens, expectedReuse(results[2]!.promptTokens, b, ps));
      assert.ok(results[2]!.usage.cachedTokens > 0);
      assert.ok(results[3]!.usage.cachedTokens < expectedReuse(results[3]!.promptTokens, a, ps), "a was evicted");
    });
  });

  Deno.test(name("the second turn of a chat prefills only its new tokens"), async () => {
    await withEngine(CHAT_MODEL, base, async (engine) => {
      const ps = engine.kvPool.pageSize;
      const first = [{ role: "user", content: "Tell me a fortune about the sea and the stars, please." }];
      const r1 = await engine.generate(first, { ...GREEDY, maxTokens: 40, ignoreEos: false }).result;
      const second = [...first, { role: "assistant", content: r1.text }, { role: "user", content: "And another." }];
      const before = engine.kvStats().prefilledTokens;
      const r2 = await engine.generate(second, { ...GREEDY, maxTokens: 8 }).result;
      const held = [...r1.promptTokens, ...r1.tokens];
      const reused = expectedReuse(r2.promptTokens, held, ps);
      assert.ok(reused >= Math.floor(r1.promptTokens.length / ps) * ps, `the first turn's prompt is reused (${reused})`);
      assert.equal(r2.usage.cachedTokens, reused);
      assert.equal(engine.kvStats().prefilledTokens - before, r2.promptTokens.length - reused);
      const fresh = await withEngine(CHAT_MODEL, { ...base, prefixCache: false }, async (e) =>
        (await e.generate(second, { ...GREEDY, maxTokens: 8 }).result).tokens);
      assert.deepEqual(r2.tokens, fresh);
    });
  });

  Deno.test(name("limits: a prompt the pool can never hold, one past the context, and a full context are named"), async () => {
    const page = await pageBytes(MODEL, base);
    await withEngine(MODEL, { ...base, kvCacheBytes: 3 * page, contextLength: 128 }, async (engine) => {
      const ps = engine.kvPool.pageSize;
      assert.equal(engine.limits.contextLength, 128);
      // Longer than the pool (3 pages) but within the context: refused, naming --kv-budget.
      const tooBig = await engine.generate(tokenPrompt(1, 3 * ps + 1), GREEDY).result.then(() => undefined, (e) => e);
      assert.ok(tooBig instanceof InvalidRequestError);
      assert.equal(tooBig.code, "KV_POOL_TOO_SMALL");
      assert.match(tooBig.message, /--kv-budget/);
      assert.match(tooBig.message, /kvCacheBytes/);
      // A sequence alone fills the pool: it ends with "length" there. Its last token is
      // sampled from the last position's logits and never fed, so it holds one more.
      const full = await engine.generate(tokenPrompt(2, 10), { ...GREEDY, maxTokens: 500 }).result;
      assert.equal(full.finishReason, "length");
      assert.equal(full.promptTokens.length + full.tokens.length, 3 * ps + 1);
    });
    await withEngine(MODEL, { ...base, contextLength: 40 }, async (engine) => {
      const long = await engine.generate(tokenPrompt(3, 40), GREEDY).result.then(() => undefined, (e) => e);
      assert.ok(long instanceof InvalidRequestError);
      assert.equal(long.code, "PROMPT_TOO_LONG");
      assert.match(long.message, /--context/);
      const r = await engine.generate(tokenPrompt(4, 30), { ...GREEDY, maxTokens: 500 }).result;
      assert.equal(r.finishReason, "length");
      assert.equal(r.tokens.length, 40 - 30 + 1);
    });
  });

  Deno.test(name("n choices: each equals an n = 1 request with its seed, choice 0 the request's own; they differ"), async () => {
    const page = await pageBytes(MODEL, base);
    // 37 tokens: the prompt's last page is partial, so the choices fork it by copy.
    const prompt = tokenPrompt(41, 37);
    const o: GenerateOptions = { ...SEEDED, seed: 11, maxTokens: backend.slow ? 8 : 24 };
    const singles = await withEngine(MODEL, { ...base, prefixCache: false, kvCacheBytes: 8 * page }, async (engine) => {
      const out: number[][] = [];
      for (let i = 0; i < 3; i++) out.push([...(await engine.generate(prompt, { ...o, seed: choiceSeed(11, i) }).result).tokens]);
      return out;
    });
    assert.equal(choiceSeed(11, 0), 11);
    // A pool of 8 pages for 3 choices of up to 61 positions: they must share the prompt's pages.
    await withEngine(MODEL, { ...base, kvCacheBytes: 8 * page }, async (engine) => {
      const stream = engine.generate(prompt, { ...o, n: 3 });
      const streamed: number[][] = [[], [], []];
      const finished: string[] = [];
      for await (const chunk of stream) {
        streamed[chunk.index]!.push(...chunk.tokens);
        if (chunk.finishReason) finished.push(`${chunk.index}:${chunk.finishReason}`);
      }
      const result = await stream.result;
      assert.deepEqual(result.choices.map((c) => c.tokens), singles);
      assert.deepEqual(streamed, singles);
      assert.deepEqual(finished.sort(), ["0:length", "1:length", "2:length"]);
      assert.deepEqual(result.choices.map((c) => c.index), [0, 1, 2]);
      assert.deepEqual(result.tokens, singles[0]);
      assert.notDeepEqual(singles[1], singles[0]);
      assert.notDeepEqual(singles[2], singles[1]);
      assert.equal(result.usage.completionTokens, 3 * o.maxTokens!);
      assert.equal(result.usage.totalTokens, 37 + 3 * o.maxTokens!);
      // Choices 1 and 2 took the prompt from choice 0 (all but its last token each).
      assert.equal(engine.kvStats().prefilledTokens, 37 + 2);
      assert.equal(engine.kvStats().usedPages, 0);
      // n = 1 still answers as before, with one choice listed.
      const one = await engine.generate(prompt, o).result;
      assert.deepEqual(one.choices, [{ index: 0, text: one.text, tokens: one.tokens, finishReason: one.finishReason }]);
    });
  });
}
