/**
 * `Engine.profile` (what `bench --profile` runs): through the engine's own runner and page
 * pool, on slot 0 while no request runs; the engine serves requests after it as before.
 */
import assert from "node:assert/strict";
import { loadEngine } from "../../src/engine/engine.ts";
import { GpuError } from "../../src/errors.ts";
import { syntheticModelPath } from "../node/support/fixtures.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");

Deno.test("engine.profile: per-kernel GPU times of a prompt and a decode step, then requests run as before", async () => {
  const engine = await loadEngine(MODEL, { backend: "webgpu", webgpu: "deno", maxSequences: 2 });
  try {
    const greedy = { temperature: 0, maxTokens: 6 } as const;
    const before = (await engine.generate("Once upon a time", greedy).result).tokens;
    const prompt = engine.tokenizer.encode("The sea was calm that night");
    const p = await engine.profile(prompt, { lookahead: 2, rounds: 1 });
    assert.ok(p.prefill.passes.length > 0 && p.decode.passes.length > 0);
    assert.ok(p.prefill.passes.every((x) => x.ns >= 0) && p.decodeWallUsPerToken > 0);
    assert.ok(p.decode.passes.some((x) => x.label.startsWith("matvec")), "the decode step's products are timed");
    assert.equal(engine.kvStats().usedPages, 0, "the profile's pages are given back");
    assert.deepEqual((await engine.generate("Once upon a time", greedy).result).tokens, before);
  } finally {
    await engine.dispose();
  }
  assert.equal(engine.memory().liveBytes, 0);
});

Deno.test("engine.profile: a runner without timestamp queries is refused with GPU_UNSUPPORTED", async () => {
  const engine = await loadEngine(MODEL, { backend: "cpu" });
  try {
    await assert.rejects(engine.profile([1, 2, 3], { lookahead: 1 }), (e) => e instanceof GpuError && e.code === "GPU_UNSUPPORTED");
    assert.equal((await engine.generate("Once", { temperature: 0, maxTokens: 2 }).result).tokens.length, 2);
  } finally {
    await engine.dispose();
  }
});
