/**
 * Loading from a URL whose server stalls: the read timeout turns silence into a
 * `SourceError` `READ_TIMEOUT` naming the URL and the time, and an abort (the caller's
 * signal, `engine.dispose()`, Ctrl-C in the CLI) ends the wait at once, timeout or not.
 *
 * Real servers on 127.0.0.1 that accept and then never answer, or answer part of a body and
 * stop. Every wait here is on a real event (the server saw the request, a promise settled);
 * the timeouts under test are the product's own timers, set small where a timeout is the
 * point and to Infinity where the abort must act alone.
 */
import assert from "node:assert/strict";
import { EngineDisposedError } from "../../src/engine/errors.ts";
import { createEngine } from "../../src/engine/engine.ts";
import { SourceError } from "../../src/errors.ts";
import { openSource } from "../../src/gguf/source.ts";

/** Bytes the partial server claims the file has. */
const CLAIMED_SIZE = 1000;

interface StallingServer {
  readonly url: string;
  /** Resolves when a request that will stall has arrived. */
  readonly stalled: Promise<void>;
  close(): Promise<void>;
}

/**
 * `silent`: every request is accepted and never answered. `partial`: the 1-byte range
 * probe is answered properly; any other range gets its headers and 10 bytes, then nothing.
 */
function stallingServer(kind: "silent" | "partial"): StallingServer {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let markStalled!: () => void;
  const stalled = new Promise<void>((resolve) => (markStalled = resolve));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const range = req.headers.get("range");
    if (kind === "partial" && range === "bytes=0-0") {
      return new Response(new Uint8Array([0x47]), { status: 206, headers: { "content-range": `bytes 0-0/${CLAIMED_SIZE}` } });
    }
    markStalled();
    if (kind === "silent") {
      await released;
      return new Response(null, { status: 503 });
    }
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(new Uint8Array(10));
        await released;
        controller.close();
      },
    });
    return new Response(body, { status: 206, headers: { "content-range": `bytes 0-99/${CLAIMED_SIZE}` } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/model.gguf`,
    stalled,
    async close() {
      release();
      await server.shutdown();
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected a rejection");
}

function assertReadTimeout(error: unknown, url: string, ms: number): void {
  assert.ok(error instanceof SourceError, `a SourceError, got ${String(error)}`);
  assert.equal(error.code, "READ_TIMEOUT");
  assert.equal(error.source, url);
  assert.ok(error.message.includes(url), error.message);
  assert.ok(error.message.includes(`${ms} ms`), error.message);
}

Deno.test("load-url: a server that accepts and never answers: READ_TIMEOUT naming the URL and the time", async () => {
  const server = stallingServer("silent");
  try {
    const error = await rejection(openSource(server.url, { readTimeoutMs: 150 }));
    assertReadTimeout(error, server.url, 150);
  } finally {
    await server.close();
  }
});

Deno.test("load-url: a server that sends headers and some bytes, then stalls: READ_TIMEOUT", async () => {
  const server = stallingServer("partial");
  try {
    const source = await openSource(server.url, { readTimeoutMs: 150 });
    assert.equal(source.size, CLAIMED_SIZE);
    const error = await rejection(source.read(0, 100));
    assertReadTimeout(error, server.url, 150);
    assert.ok((error as Error).message.includes("bytes 0-99"), "names the range being read");
    await source.close();
  } finally {
    await server.close();
  }
});

Deno.test("load-url: an abort during a silent wait rejects with the abort, not after a timeout", async () => {
  const server = stallingServer("silent");
  try {
    const controller = new AbortController();
    const opening = openSource(server.url, { signal: controller.signal, readTimeoutMs: Infinity });
    await server.stalled;
    controller.abort();
    const error = await rejection(opening);
    assert.equal((error as Error).name, "AbortError");
  } finally {
    await server.close();
  }
});

Deno.test("load-url: an abort during a stalled body rejects with the abort's reason", async () => {
  const server = stallingServer("partial");
  try {
    const source = await openSource(server.url, { readTimeoutMs: Infinity });
    const controller = new AbortController();
    const reading = source.read(0, 100, controller.signal);
    await server.stalled;
    const reason = new Error("user stopped it");
    controller.abort(reason);
    assert.equal(await rejection(reading), reason);
    await source.close();
  } finally {
    await server.close();
  }
});

Deno.test("load-url: readTimeoutMs must be a positive number", async () => {
  for (const bad of [0, -1, Number.NaN]) {
    const error = await rejection(openSource("http://127.0.0.1:9/x.gguf", { readTimeoutMs: bad }));
    assert.equal((error as { code?: string }).code, "INVALID_ARGUMENT", String(bad));
    assert.match((error as Error).message, /readTimeoutMs/);
  }
});

Deno.test("load-url: the engine passes readTimeoutMs down, and dispose() ends a hung load", async (t) => {
  await t.step("a silent server: ready rejects with READ_TIMEOUT", async () => {
    const server = stallingServer("silent");
    const engine = createEngine(server.url, { readTimeoutMs: 150 });
    try {
      assertReadTimeout(await rejection(engine.ready), server.url, 150);
    } finally {
      await engine.dispose();
      await server.close();
    }
  });
  await t.step("dispose while the server is silent: ready rejects with EngineDisposedError", async () => {
    const server = stallingServer("silent");
    const engine = createEngine(server.url, { readTimeoutMs: Infinity });
    try {
      await server.stalled;
      await engine.dispose();
      assert.ok((await rejection(engine.ready)) instanceof EngineDisposedError);
      assert.deepEqual(engine.memory(), { liveBuffers: 0, liveBytes: 0 });
    } finally {
      await server.close();
    }
  });
});

Deno.test("load-url: Ctrl-C while the CLI waits on a silent server ends the process with 130", async () => {
  const server = stallingServer("silent");
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "src/cli/main.ts", "generate", "--model", server.url, "--prompt", "hi", "--max-tokens", "2"],
      cwd: new URL("../../", import.meta.url),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { XDG_RUNTIME_DIR: "/tmp" },
    }).spawn();
    await server.stalled;
    child.kill("SIGINT");
    const out = await child.output();
    assert.equal(out.code, 130, new TextDecoder().decode(out.stderr));
    assert.equal(new TextDecoder().decode(out.stdout), "", "nothing generated");
    assert.match(new TextDecoder().decode(out.stderr), /^interrupted: the model's load was stopped\n$/);
  } finally {
    await server.close();
  }
});

Deno.test("load-url: --read-timeout ends the CLI's wait on a silent server with an error naming the URL", async () => {
  const server = stallingServer("silent");
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "src/cli/main.ts", "generate", "--model", server.url, "--prompt", "hi", "--read-timeout", "0.2"],
      cwd: new URL("../../", import.meta.url),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { XDG_RUNTIME_DIR: "/tmp" },
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, stderr);
    assert.ok(stderr.includes(server.url) && stderr.includes("200 ms") && stderr.includes("READ_TIMEOUT"), stderr);
  } finally {
    await server.close();
  }
});
