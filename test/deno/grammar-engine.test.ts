/**
 * Constrained decoding through the engine on the embedded model: JSON-schema output at
 * temperature 1 parses and conforms for every seed, the end token comes only where the
 * grammar may end (finish "stop"), and an unconstrained request running beside it keeps
 * its output (the same tokens as alone: scheduling never changes draws).
 */
import assert from "node:assert/strict";
import { loadEngine } from "../../src/engine/engine.ts";
import { DEFAULT_MODEL_PATH } from "../../src/cli/default-model.ts";

const SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 1, maxLength: 8 },
    mood: { enum: ["calm", "wild", "odd"] },
    tags: { type: "array", items: { type: "string", maxLength: 4 }, maxItems: 2 },
  },
  required: ["name", "mood", "tags"],
  additionalProperties: false,
};

function conforms(v: unknown): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  if (Object.keys(o).sort().join() !== "mood,name,tags") return false;
  if (typeof o.name !== "string" || [...o.name].length < 1 || [...o.name].length > 8) return false;
  if (!["calm", "wild", "odd"].includes(o.mood as string)) return false;
  return Array.isArray(o.tags) && o.tags.length <= 2 && o.tags.every((t) => typeof t === "string" && [...t].length <= 4);
}

Deno.test("json-schema output parses and conforms over seeds at temperature 1 (cpu runner)", async () => {
  const engine = await loadEngine(DEFAULT_MODEL_PATH, { backend: "cpu" });
  try {
    for (let seed = 1; seed <= 6; seed++) {
      const result = await engine.generate("Once upon a time", { jsonSchema: SCHEMA, temperature: 1, seed, maxTokens: 400 }).result;
      assert.deepEqual(result.finishReason, "stop", `seed ${seed}: ${result.text}`);
      assert.ok(conforms(JSON.parse(result.text)), `seed ${seed}: ${result.text}`);
    }
    const plain = await engine.generate("Once upon a time", { temperature: 1, seed: 3, maxTokens: 12, lookahead: 4 }).result;
    const [beside] = await Promise.all([
      engine.generate("Once upon a time", { temperature: 1, seed: 3, maxTokens: 12, lookahead: 4 }).result,
      engine.generate("Once upon a time", { jsonSchema: SCHEMA, temperature: 1, seed: 9, maxTokens: 400 }).result,
    ]);
    assert.deepEqual(beside.tokens, plain.tokens);
  } finally {
    await engine.dispose();
  }
});
