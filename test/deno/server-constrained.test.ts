/**
 * Constrained decoding through the official `openai` client against a real server process
 * on the default (webgpu) backend and the embedded model (issue 19): `response_format`
 * json_schema output parses and conforms over 10 seeds at temperature 1, json_object gives
 * a JSON object, llama.cpp's `grammar` (GBNF) extension is followed, and a schema keyword
 * that cannot be enforced or a bad GBNF is a 400 naming it.
 *
 * The conformance checks are written from the schema's meaning (and the grammar's), not
 * from the GBNF that the server derives.
 * Run: XDG_RUNTIME_DIR=/tmp deno test -A test/deno/server-constrained.test.ts
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer } from "./support/server-process.ts";

const SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 2, maxLength: 6 },
    mood: { enum: ["calm", "wild", 7] },
    tags: { type: "array", items: { type: "object", properties: { n: { type: "integer" } }, required: ["n"], additionalProperties: false }, maxItems: 2 },
  },
  required: ["name", "mood", "tags"],
  additionalProperties: false,
} as const;

function conforms(v: unknown): boolean {
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
  if (!isObject(v) || Object.keys(v).sort().join() !== "mood,name,tags") return false;
  if (typeof v.name !== "string" || [...v.name].length < 2 || [...v.name].length > 6) return false;
  if (!["calm", "wild", 7].includes(v.mood as string | number)) return false;
  return Array.isArray(v.tags) && v.tags.length <= 2 &&
    v.tags.every((t) => isObject(t) && Object.keys(t).join() === "n" && Number.isInteger(t.n));
}

const MESSAGES: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Tell me about a cat." }];

Deno.test("server-constrained: json_schema, json_object and GBNF output conform over seeds at temperature 1 on webgpu; unenforceable schemas and bad GBNF are 400s naming them", async () => {
  const server = await startServer(["--max-sequences", "4"]);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const { data: [model] } = await client.models.list();
    const base = { model: model!.id, messages: MESSAGES, temperature: 1, max_tokens: 160 } as const;

    // Ten seeds at once: constrained rows share steps (several masks per upload).
    const replies = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      client.chat.completions.create({
        ...base,
        seed: i + 1,
        response_format: { type: "json_schema", json_schema: { name: "cat", schema: SCHEMA, strict: true } },
      })
    ));
    replies.forEach((r, i) => {
      const text = r.choices[0]!.message.content!;
      assert.equal(r.choices[0]!.finish_reason, "stop", `seed ${i + 1}: ${text}`);
      assert.ok(conforms(JSON.parse(text)), `seed ${i + 1}: ${text}`);
    });

    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({ ...base, seed, response_format: { type: "json_object" } });
      const text = r.choices[0]!.message.content!;
      const value: unknown = JSON.parse(text);
      assert.ok(typeof value === "object" && value !== null && !Array.isArray(value), `seed ${seed}: ${text}`);
    }

    const grammar = 'root ::= ("yes" | "no") ", " [1-9] [0-9]? "."';
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({ ...base, seed, grammar } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      assert.match(r.choices[0]!.message.content!, /^(yes|no), [1-9][0-9]?\.$/, `seed ${seed}`);
      assert.equal(r.choices[0]!.finish_reason, "stop");
    }

    const refused = async (body: Record<string, unknown>, param: string, message: RegExp) =>
      await assert.rejects(
        client.chat.completions.create({ ...base, ...body } as OpenAI.ChatCompletionCreateParamsNonStreaming),
        (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === param && message.test(e.message),
      );
    await refused(
      { response_format: { type: "json_schema", json_schema: { name: "p", schema: { type: "object", properties: { id: { type: "string", pattern: "^[a-z]+$" } } } } } },
      "response_format.json_schema.schema",
      /"pattern"/,
    );
    await refused({ grammar: 'root ::= "a" undefined-rule' }, "grammar", /undefined-rule/);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});
