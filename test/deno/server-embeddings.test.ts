/**
 * `POST /v1/embeddings` through the official `openai` client against a real `serve`
 * process (CPU backend, embedded model): float and base64 vectors equal the engine's own
 * `embed()`, `dimensions` truncates and renormalises, a batch keeps its order, and bad
 * requests are 400s naming the field (`--context` for an input longer than the context).
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadEngine } from "../../src/engine/engine.ts";
import { DEFAULT_MODEL_PATH } from "../../src/cli/default-model.ts";
import { startServer } from "./support/server-process.ts";

const CONTEXT = 64;
const INPUTS = ["The meaning of life is", "Hi", "A fortune cookie"];

const expected = await (async () => {
  const engine = await loadEngine(DEFAULT_MODEL_PATH, { backend: "cpu", contextLength: CONTEXT });
  try {
    return { full: await engine.embed(INPUTS), short: await engine.embed(INPUTS[0]!, { dimensions: 8 }) };
  } finally {
    await engine.dispose();
  }
})();

function assertClose(actual: ArrayLike<number>, wanted: Float32Array, what: string): void {
  assert.equal(actual.length, wanted.length, `${what}: length`);
  for (let i = 0; i < wanted.length; i++) assert.ok(Math.abs(actual[i]! - wanted[i]!) <= 1e-6, `${what}[${i}]: ${actual[i]} vs ${wanted[i]}`);
}

Deno.test("server: /v1/embeddings through the openai client (float, base64, dimensions, batch, 400s)", async () => {
  const server = await startServer(["--backend", "cpu", "--context", String(CONTEXT)]);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const floats = await client.embeddings.create({ model: "m", input: INPUTS, encoding_format: "float" });
    assert.equal(floats.object, "list");
    assert.deepEqual(floats.data.map((d) => d.index), [0, 1, 2]);
    floats.data.forEach((d, i) => assertClose(d.embedding, expected.full.embeddings[i]!, `float ${i}`));
    assert.equal(floats.usage.prompt_tokens, expected.full.promptTokens);
    assert.equal(floats.usage.total_tokens, expected.full.promptTokens);

    // The client asks for base64 itself when no format is given, and decodes it to floats.
    const decoded = await client.embeddings.create({ model: "m", input: INPUTS[1]! });
    assertClose(decoded.data[0]!.embedding, expected.full.embeddings[1]!, "base64 decoded by the client");
    const raw = await client.embeddings.create({ model: "m", input: INPUTS[1]!, encoding_format: "base64" });
    const bytes = Uint8Array.from(atob(raw.data[0]!.embedding as unknown as string), (c) => c.charCodeAt(0));
    assertClose(new Float32Array(bytes.buffer), expected.full.embeddings[1]!, "base64 bytes");

    const short = await client.embeddings.create({ model: "m", input: INPUTS[0]!, dimensions: 8, encoding_format: "float" });
    assertClose(short.data[0]!.embedding, expected.short.embeddings[0]!, "dimensions 8");
    const norm = Math.hypot(...short.data[0]!.embedding);
    assert.ok(Math.abs(norm - 1) < 1e-5, `renormalised: ${norm}`);

    const refused = async (body: Record<string, unknown>, param: string, needle?: string) => {
      const response = await fetch(`${server.url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const json = await response.json();
      assert.equal(response.status, 400, JSON.stringify(json));
      assert.equal(json.error.param, param);
      if (needle) assert.ok(json.error.message.includes(needle), json.error.message);
    };
    await refused({ input: "" }, "input");
    await refused({ input: [] }, "input");
    await refused({ input: ["ok", ""] }, "input[1]");
    await refused({ input: "hi", dimensions: 100000 }, "dimensions");
    await refused({ input: "hi", encoding_format: "int8" }, "encoding_format");
    await refused({ input: [[1, 2, 1e9]] }, "input[0][2]");
    await refused({ input: "word ".repeat(200) }, "input", "--context");
  } finally {
    await server.stop();
  }
});
