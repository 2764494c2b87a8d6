/**
 * The embedded model's greedy ids through our engine on WebGPU equal llama.cpp's, as kept
 * in test/fixtures/embedded-greedy.json (derived from llama.cpp and checked against it by
 * test/node/embedded): every variant, every prompt, up to llama.cpp's first near-tie.
 */
import assert from "node:assert/strict";
import { loadEngine } from "../../src/engine/engine.ts";
import { decisivePrefix, GOLDEN_FILE, GOLDEN_TOKENS, GOLDEN_VARIANTS, type GoldenCase } from "../node/embedded/greedy-golden.ts";
import { BACKENDS } from "./support/backends.ts";

const ROOT = new URL("../../", import.meta.url);
const golden = JSON.parse(await Deno.readTextFile(new URL(GOLDEN_FILE, ROOT))) as GoldenCase[];

for (const backend of BACKENDS.filter((b) => b.name !== "cpu" && !b.slow)) {
  for (const variant of GOLDEN_VARIANTS) {
    Deno.test(`embedded ${variant} on ${backend.name}: greedy ids equal llama.cpp's`, async () => {
      const cases = golden.filter((c) => c.variant === variant);
      assert.ok(cases.length > 0, `the golden file has cases for ${variant}`);
      const path = new URL(`models/tiny-fortunes-${variant}.gguf`, ROOT).pathname;
      const engine = await loadEngine(path, { ...backend.options, maxSequences: cases.length });
      try {
        const results = await Promise.all(
          cases.map((c) => engine.generate(c.prompt, { temperature: 0, maxTokens: GOLDEN_TOKENS }).result),
        );
        results.forEach((r, i) => {
          const c = cases[i]!;
          const n = decisivePrefix(c);
          assert.deepEqual(r.promptTokens, c.promptIds, `prompt ids of "${c.prompt}"`);
          assert.deepEqual(r.tokens.slice(0, n), c.ids.slice(0, n), `greedy ids after "${c.prompt}" (first ${n})`);
        });
      } finally {
        await engine.dispose();
      }
    });
  }
}
