/**
 * llama.cpp's own endpoints on the server (`POST /tokenize`, `POST /detokenize`,
 * `GET /props`), against a real serve process with plain fetch. Expected ids come from the
 * engine's tokenizer run in this process on the same file; expected texts are the inputs
 * themselves (a round trip), and the props' template is read from the file's header.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { createEngine, loadEngine } from "../../src/engine/engine.ts";
import { openGGUF } from "../../src/gguf/reader.ts";
import { createHandler } from "../../src/server/handler.ts";
import { publicModelPath } from "../../src/server/llamacpp-api.ts";
import { rawConnection, startServer } from "./support/server-process.ts";

const MODEL = fileURLToPath(new URL("../../models/tiny-fortunes-q8_0.gguf", import.meta.url));
const MODEL_ID = "tiny-fortunes-q8_0";
const CONTEXT = 128; // below the model's trained 256, so the flag is what /props must show
const SEQUENCES = 3;
const ARGS = [
  "--model",
  MODEL,
  "--backend",
  "cpu",
  "--max-sequences",
  String(SEQUENCES),
  "--context",
  String(CONTEXT),
  "--api-key",
  "sesame",
];
const AUTH = { authorization: "Bearer sesame" };

/** Accents, a dash, CJK and an emoji: characters of two, three and four UTF-8 bytes. */
const TEXT = "héllo wörld — 日本 🙂 fortune";

/** The engine in this process, with the server's options: ids and limits to compare with. */
const local = await (async () => {
  const engine = await loadEngine(MODEL, { backend: "cpu", maxSequences: SEQUENCES, contextLength: CONTEXT });
  try {
    const t = engine.tokenizer;
    return {
      plain: t.encode(TEXT, { addSpecial: false }),
      special: t.encode(TEXT, { addSpecial: true }),
      bos: t.bos,
      addBos: t.addBos,
      vocabSize: t.vocabSize,
      mixedTail: t.encode(" and more", { addSpecial: false }),
      bosText: t.bos === undefined ? "" : t.piece(t.bos),
      eosText: t.eos === undefined ? "" : t.piece(t.eos),
      limits: engine.limits,
    };
  } finally {
    await engine.dispose();
  }
})();

const TEMPLATE = await (async () => {
  const file = await openGGUF(MODEL);
  try {
    const t = file.metadata["tokenizer.chat_template"];
    assert.equal(typeof t, "string", "the embedded model has a chat template");
    return t as string;
  } finally {
    await file.close();
  }
})();

async function post(
  url: string,
  path: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { ...AUTH, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

type ErrorBody = { error: { param: string | null; message: string; code: string | null } };

Deno.test("server /tokenize and /detokenize: ids as in-process, multi-byte round trip, pieces, BOS, mixed content", async () => {
  const server = await startServer(ARGS);
  try {
    const plain = await post(server.url, "/tokenize", { content: TEXT });
    assert.equal(plain.status, 200);
    assert.deepEqual(plain.json.tokens, local.plain, "llama.cpp's default is add_special: false");

    const back = await post(server.url, "/detokenize", { tokens: plain.json.tokens });
    assert.deepEqual(back, { status: 200, json: { content: TEXT } });

    // add_special adds BOS where the model does; detokenize renders it as its text.
    assert.ok(local.addBos && local.bos !== undefined, "the embedded model adds BOS");
    const special = await post(server.url, "/tokenize", { content: TEXT, add_special: true });
    assert.deepEqual(special.json.tokens, local.special);
    assert.equal((special.json.tokens as number[])[0], local.bos);
    assert.deepEqual((special.json.tokens as number[]).slice(1), local.plain);
    const backSpecial = await post(server.url, "/detokenize", { tokens: special.json.tokens });
    assert.equal(backSpecial.json.content, local.bosText + TEXT);

    // with_pieces: a piece is text where it is valid UTF-8, else its bytes; together they are the text.
    const pieces = await post(server.url, "/tokenize", { content: TEXT, with_pieces: true });
    const list = pieces.json.tokens as { id: number; piece: string | number[] }[];
    assert.deepEqual(list.map((p) => p.id), local.plain);
    const bytes = list.flatMap((p) => (typeof p.piece === "string" ? [...new TextEncoder().encode(p.piece)] : p.piece));
    assert.deepEqual(bytes, [...new TextEncoder().encode(TEXT)]);
    assert.ok(list.some((p) => Array.isArray(p.piece)), "some token holds part of a character (bytes)");
    assert.ok(list.some((p) => typeof p.piece === "string" && p.piece.length > 0), "some token is whole text");

    // llama.cpp's mixed content: texts and ids in order; BOS only when the first part is text.
    const mixed = await post(server.url, "/tokenize", { content: [TEXT, local.bos, " and more"], add_special: true });
    assert.deepEqual(mixed.json.tokens, [...local.special, local.bos, ...local.mixedTail]);
    const idFirst = await post(server.url, "/tokenize", { content: [local.bos, TEXT], add_special: true });
    assert.deepEqual(idFirst.json.tokens, [local.bos, ...local.plain]);

    const metrics = await (await fetch(`${server.url}/metrics`, { headers: AUTH })).text();
    assert.match(metrics, /^llm_requests_total\{endpoint="\/tokenize",status="200"\} 5$/m);
    assert.match(metrics, /^llm_requests_total\{endpoint="\/detokenize",status="200"\} 2$/m);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test("server /props: the context and slots it runs with, the model's name, path and chat template", async () => {
  const server = await startServer(ARGS);
  try {
    const r = await fetch(`${server.url}/props`, { headers: AUTH });
    assert.equal(r.status, 200);
    const props = await r.json();
    assert.equal(props.default_generation_settings.n_ctx, CONTEXT);
    assert.equal(props.default_generation_settings.n_ctx, local.limits.contextLength);
    assert.equal(props.total_slots, SEQUENCES);
    assert.equal(props.total_slots, local.limits.maxSequences);
    assert.equal(props.model_alias, MODEL_ID);
    assert.equal(props.model_path, MODEL);
    assert.equal(props.chat_template, TEMPLATE);
    assert.equal(props.bos_token, local.bosText);
    assert.equal(props.eos_token, local.eosText);
    assert.equal(typeof props.default_generation_settings.params.temperature, "number");
    assert.match(props.build_info, /^gguf-webgpu: /);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test("server /tokenize, /detokenize, /props: bad input is a 400 naming the field; the key and methods are checked", async () => {
  const server = await startServer(ARGS);
  try {
    const cases: [string, unknown, string, RegExp][] = [
      [
        "/detokenize",
        { tokens: [104, local.vocabSize] },
        "tokens[1]",
        new RegExp(`${local.vocabSize} is not a token id`),
      ],
      ["/detokenize", { tokens: [-1] }, "tokens[0]", /-1 is not a token id/],
      ["/detokenize", { tokens: [1.5] }, "tokens[0]", /1\.5 is not a token id/],
      ["/detokenize", { tokens: ["104"] }, "tokens[0]", /"104" is not a token id/],
      ["/detokenize", { tokens: "104" }, "tokens", /must be an array/],
      ["/detokenize", {}, "tokens", /is required/],
      ["/tokenize", { content: ["a", 99999] }, "content[1]", /99999 is not a token id/],
      ["/tokenize", { content: 5 }, "content", /must be a string/],
      ["/tokenize", {}, "content", /is required/],
      ["/tokenize", { content: "a", with_pieces: "yes" }, "with_pieces", /must be a boolean/],
      ["/tokenize", [1, 2], "body", /must be a JSON object/],
    ];
    for (const [path, body, param, message] of cases) {
      const r = await post(server.url, path, body);
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}`);
      const error = (r.json as unknown as ErrorBody).error;
      assert.equal(error.param, param, `${path} ${JSON.stringify(body)}`);
      assert.match(error.message, message);
    }

    const noKey = await fetch(`${server.url}/tokenize`, { method: "POST", body: JSON.stringify({ content: "a" }) });
    assert.equal(noKey.status, 401);
    await noKey.body?.cancel();
    const propsNoKey = await fetch(`${server.url}/props`);
    assert.equal(propsNoKey.status, 401);
    await propsNoKey.body?.cancel();
    // The DNS-rebinding guard covers these paths too (the server is bound to 127.0.0.1).
    const c = await rawConnection(server.url);
    try {
      await c.send(
        `GET /props HTTP/1.1\r\nhost: evil.example\r\nauthorization: Bearer sesame\r\nconnection: close\r\n\r\n`,
      );
      assert.match(await c.response(), /^HTTP\/1\.1 403/);
    } finally {
      c.close();
    }
    const wrongMethod = await fetch(`${server.url}/tokenize`, { headers: AUTH });
    assert.equal(wrongMethod.status, 405);
    await wrongMethod.body?.cancel();
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

Deno.test("server /props and /tokenize sent while the model loads are answered once it is loaded", async () => {
  // The model comes over HTTP from a server that answers only once released: the engine
  // stays in "loading" until then, with no timing involved.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let markRequested!: () => void;
  const requested = new Promise<void>((resolve) => (markRequested = resolve));
  const fileBytes = await Deno.readFile(MODEL);
  const modelServer = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
    markRequested();
    await released;
    return new Response(fileBytes, { status: 200 }); // no range support: read once, kept in memory
  });
  const engine = createEngine(`http://127.0.0.1:${modelServer.addr.port}/model.gguf`, { backend: "cpu" });
  try {
    const handler = createHandler(engine, { modelId: "m" });
    const props = handler(new Request("http://localhost/props"));
    const tokenize = handler(
      new Request("http://localhost/tokenize", { method: "POST", body: JSON.stringify({ content: TEXT }) }),
    );
    await requested;
    assert.equal(engine.state, "loading", "the model's bytes are held back");
    release();
    const [p, t] = await Promise.all([props, tokenize]);
    assert.equal(p.status, 200);
    assert.equal((await p.json()).chat_template, TEMPLATE);
    assert.equal(t.status, 200);
    assert.deepEqual((await t.json()).tokens, local.plain);
  } finally {
    release();
    await engine.dispose();
    await modelServer.shutdown();
  }
});

Deno.test("/props model_path: a URL loses its user, password, query and fragment; a local path stays", () => {
  assert.equal(
    publicModelPath("https://user:pw@models.example:8443/a/m.gguf?X-Sig=secret#x"),
    "https://models.example:8443/a/m.gguf",
  );
  assert.equal(publicModelPath("/srv/models/m.gguf"), "/srv/models/m.gguf");
});
