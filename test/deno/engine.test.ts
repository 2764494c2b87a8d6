/**
 * The engine's lifecycle and request semantics, on every backend that runs here: the CPU
 * reference and WebGPU (Mesa's lavapipe under Deno). Expected outputs are never written
 * by hand: they come from the same engine run alone, unbatched, unstopped or with
 * lookahead 1, or from the CPU runner.
 */
import assert from "node:assert/strict";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { createEngine, type Engine, type EngineOptions, loadEngine } from "../../src/engine/engine.ts";
import { EngineDisposedError, EngineFailedError, InvalidRequestError, RequestAbortedError } from "../../src/engine/errors.ts";
import type { GenerateOptions, GenerationChunk } from "../../src/engine/types.ts";
import { BACKENDS } from "./support/backends.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const GREEDY: GenerateOptions = { temperature: 0, maxTokens: 12, ignoreEos: true };
const PROMPTS = [
  "Hello there",
  "The quick brown fox",
  "Once upon a time",
  "def main():",
  "Numbers: 1 2 3",
  "A",
  "Über café",
  "Why is the sky blue?",
];

async function collect(stream: AsyncIterable<GenerationChunk>): Promise<{ text: string; tokens: number[]; chunks: number }> {
  let text = "";
  const tokens: number[] = [];
  let chunks = 0;
  for await (const chunk of stream) {
    text += chunk.text;
    tokens.push(...chunk.tokens);
    chunks++;
  }
  return { text, tokens, chunks };
}

async function withEngine<T>(options: EngineOptions, body: (engine: Engine) => Promise<T>): Promise<T> {
  const engine = await loadEngine(MODEL, options);
  try {
    return await body(engine);
  } finally {
    await engine.dispose();
  }
}

for (const backend of BACKENDS) {
  const base: EngineOptions = { ...backend.options, maxSequences: 4 };
  const name = (s: string) => `engine[${backend.name}]: ${s}`;

  Deno.test(name("requests made before the model is loaded are all served"), async () => {
    const engine = createEngine(MODEL, base);
    assert.equal(engine.state, "loading");
    const streams = PROMPTS.slice(0, 6).map((p) => engine.generate(p, GREEDY));
    const results = await Promise.all(streams.map((s) => s.result));
    for (const r of results) {
      assert.equal(r.tokens.length, 12);
      assert.equal(r.finishReason, "length");
    }
    await engine.dispose();
  });

  Deno.test(name("streamed chunks add up to the result; usage counts are right"), async () => {
    await withEngine(base, async (engine) => {
      const stream = engine.generate("Once upon a time", GREEDY);
      const streamed = await collect(stream);
      const result = await stream.result;
      assert.equal(streamed.text, result.text);
      assert.deepEqual(streamed.tokens, result.tokens);
      assert.equal(result.usage.promptTokens, result.promptTokens.length);
      assert.equal(result.usage.completionTokens, 12);
      assert.equal(result.promptTokens[0], engine.tokenizer.bos ?? result.promptTokens[0]);
      assert.deepEqual(result.promptTokens, engine.tokenizer.encode("Once upon a time"));
    });
  });

  Deno.test(name("results do not depend on batching: 16 prompts together give what each gives alone"), async () => {
    const prompts = [...PROMPTS, ...PROMPTS.map((p) => `${p}!`)];
    const alone = await withEngine({ ...base, maxSequences: 1 }, async (engine) => {
      const out: number[][] = [];
      for (const p of prompts) out.push([...(await engine.generate(p, GREEDY).result).tokens]);
      return out;
    });
    const together = await withEngine({ ...base, maxSequences: 16, maxBatchTokens: 64 }, (engine) =>
      Promise.all(prompts.map(async (p) => [...(await engine.generate(p, GREEDY).result).tokens])));
    assert.deepEqual(together, alone);
  });

  Deno.test(name("lookahead 1, 4 and 16 give the same tokens, greedy and seeded"), async () => {
    const seeded: GenerateOptions = { temperature: 0.9, topK: 20, topP: 0.9, seed: 7, maxTokens: 20, ignoreEos: true };
    const runs = [];
    for (const lookahead of [1, 4, 16]) {
      runs.push(
        await withEngine({ ...base, lookahead }, async (engine) => ({
          greedy: (await engine.generate("The quick brown fox", { ...GREEDY, maxTokens: 20 }).result).tokens,
          seeded: (await engine.generate("The quick brown fox", seeded).result).tokens,
        })),
      );
    }
    assert.deepEqual(runs[1], runs[0]);
    assert.deepEqual(runs[2], runs[0]);
  });

  Deno.test(name("the same seed gives the same output; another seed another"), async () => {
    await withEngine(base, async (engine) => {
      const opts = (seed: number): GenerateOptions => ({ temperature: 1.2, topK: 0, topP: 1, minP: 0, seed, maxTokens: 24, ignoreEos: true });
      const a = await engine.generate("Hello there", opts(1)).result;
      const b = await engine.generate("Hello there", opts(1)).result;
      const c = await engine.generate("Hello there", opts(2)).result;
      assert.deepEqual(a.tokens, b.tokens);
      assert.notDeepEqual(a.tokens, c.tokens);
    });
  });

  Deno.test(name("a stop string split across tokens ends the text before it and is never emitted"), async () => {
    await withEngine(base, async (engine) => {
      const full = await engine.generate("Why is the sky blue?", { ...GREEDY, maxTokens: 24 }).result;
      // A stop string that starts inside one token and ends inside a later one.
      const pieces = full.tokens.map((t) => engine.tokenizer.decode([t]));
      let start = 0;
      let i = 0;
      while (i < pieces.length - 2 && pieces[i]!.length < 2) start += pieces[i++]!.length;
      assert.ok(i < pieces.length - 2, "the unstopped text has multi-character tokens");
      const from = start + pieces[i]!.length - 1;
      const stop = full.text.slice(from, from + 1 + pieces[i + 1]!.length);
      const expected = full.text.slice(0, full.text.indexOf(stop));

      const stream = engine.generate("Why is the sky blue?", { ...GREEDY, maxTokens: 24, stop: [stop] });
      const streamed = await collect(stream);
      const result = await stream.result;
      assert.equal(result.finishReason, "stop");
      assert.equal(result.text, expected);
      assert.equal(streamed.text, expected);
      assert.ok(!streamed.text.includes(stop));
    });
  });

  Deno.test(name("abort before start, mid-stream and after the end"), async () => {
    await withEngine(base, async (engine) => {
      const before = new AbortController();
      before.abort();
      await assert.rejects(engine.generate("Hello there", { ...GREEDY, signal: before.signal }).result, RequestAbortedError);

      const mid = new AbortController();
      const other = engine.generate("The quick brown fox", { ...GREEDY, maxTokens: 16 });
      const stream = engine.generate("Hello there", { ...GREEDY, maxTokens: 200, signal: mid.signal });
      let seen = 0;
      await assert.rejects(
        (async () => {
          for await (const chunk of stream) {
            seen += chunk.tokens.length;
            if (seen >= 2) mid.abort();
          }
        })(),
        RequestAbortedError,
      );
      assert.ok(seen >= 2 && seen < 200);
      // The other request is untouched: same tokens as when it runs alone.
      const otherTokens = (await other.result).tokens;
      const aloneTokens = (await engine.generate("The quick brown fox", { ...GREEDY, maxTokens: 16 }).result).tokens;
      assert.deepEqual(otherTokens, aloneTokens);

      const after = new AbortController();
      const done = await engine.generate("Hello there", { ...GREEDY, signal: after.signal }).result;
      after.abort();
      assert.equal(done.tokens.length, 12);
      // Every slot is free again.
      assert.equal(engine.stats().active, 0);
      assert.equal(engine.stats().freeSlots, 4);
    });
  });

  Deno.test(name("dispose in the middle of 8 streaming requests settles all of them and stops the loop"), async () => {
    const engine = await loadEngine(MODEL, base);
    const streams = PROMPTS.map((p) => engine.generate(p, { ...GREEDY, maxTokens: 10_000 }));
    // Wait until the loop is really generating for some of them.
    const first = streams[0]![Symbol.asyncIterator]();
    await first.next();
    const settled = Promise.allSettled(streams.map((s) => s.result));
    await engine.dispose();
    for (const s of await settled) {
      assert.equal(s.status, "rejected");
      assert.ok((s as PromiseRejectedResult).reason instanceof EngineDisposedError);
    }
    await assert.rejects(first.next(), EngineDisposedError);
    assert.equal(engine.state, "disposed");
    assert.equal(engine.stats().loopRunning, false);
    assert.deepEqual(engine.memory(), { liveBuffers: 0, liveBytes: 0 });
    await engine.dispose(); // twice is safe
    await assert.rejects(engine.generate("Hello").result, EngineDisposedError);
  });

  Deno.test(name("invalid options and over-long prompts are typed errors; the engine goes on"), async () => {
    await withEngine(base, async (engine) => {
      const bad: Array<[GenerateOptions, string]> = [
        [{ temperature: -1 }, "temperature"],
        [{ topP: 0 }, "topP"],
        [{ topP: 1.5 }, "topP"],
        [{ maxTokens: 0 }, "maxTokens"],
        [{ minP: 1 }, "minP"],
        [{ topK: -3 }, "topK"],
        [{ seed: -1 }, "seed"],
      ];
      for (const [options, param] of bad) {
        const error = await engine.generate("Hello", options).result.then(() => undefined, (e) => e);
        assert.ok(error instanceof InvalidRequestError, `${param} rejected`);
        assert.equal(error.param, param);
      }
      const long = "word ".repeat(engine.limits.contextLength * 2);
      const error = await engine.generate(long, GREEDY).result.then(() => undefined, (e) => e);
      assert.ok(error instanceof InvalidRequestError);
      assert.equal(error.code, "PROMPT_TOO_LONG");
      assert.equal((await engine.generate("Hello there", GREEDY).result).tokens.length, 12);
    });
  });

  Deno.test(name(`${backend.cycles} create-generate-dispose cycles leave nothing live`), async () => {
    let peakRss = 0;
    for (let i = 0; i < backend.cycles; i++) {
      const engine = await loadEngine(MODEL, { ...base, maxSequences: 2 });
      const r = await engine.generate(PROMPTS[i % PROMPTS.length]!, { ...GREEDY, maxTokens: 2 }).result;
      assert.equal(r.tokens.length, 2);
      await engine.dispose();
      assert.deepEqual(engine.memory(), { liveBuffers: 0, liveBytes: 0 });
      assert.equal(engine.stats().loopRunning, false);
      if (i === 10) peakRss = Deno.memoryUsage().rss;
      if (i > 10) assert.ok(Deno.memoryUsage().rss < peakRss + 512 * 1024 * 1024, `rss bounded at cycle ${i}`);
    }
  });
}

Deno.test({
  name: "engine[webgpu]: a lost device fails the running requests with a typed error; a new engine works afterwards",
  // Deno's built-in WebGPU (the device is made here with navigator.gpu).
  ignore: !BACKENDS.some((b) => b.name === "webgpu"),
  fn: async () => {
    const adapter = await navigator.gpu.requestAdapter();
    assert.ok(adapter);
    const device = await adapter.requestDevice({
      requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize },
    });
    const engine = await loadEngine(MODEL, { backend: "webgpu", device, maxSequences: 2 });
    const stream = engine.generate("Hello there", { ...GREEDY, maxTokens: 10_000 });
    const reader = stream[Symbol.asyncIterator]();
    await reader.next(); // generating for sure
    device.destroy(); // as if the driver had reset: the device is gone under the engine
    const error = await stream.result.then(() => undefined, (e) => e);
    assert.ok(error instanceof EngineFailedError, `typed failure, got ${error}`);
    assert.match(error.message, /lost|destroyed|device/i);
    assert.equal(engine.state, "failed");
    const later = await engine.generate("Hello").result.then(() => undefined, (e) => e);
    assert.ok(later instanceof EngineFailedError);
    await engine.dispose();
    assert.equal(engine.stats().loopRunning, false);

    const fresh = await loadEngine(MODEL, { backend: "webgpu", maxSequences: 2 });
    assert.equal((await fresh.generate("Hello there", GREEDY).result).tokens.length, 12);
    await fresh.dispose();
  },
});
