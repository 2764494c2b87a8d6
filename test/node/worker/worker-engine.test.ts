/**
 * The worker engine's protocol, host and client on the two ends of a real MessageChannel
 * (one thread, so no browser is needed), with the CPU backend. Expected outputs come from
 * the in-thread engine on the same model: the worker must change nothing but the thread.
 */
import { afterEach, describe, expect, test } from "vitest";
import { loadEngine } from "../../../src/engine/engine.ts";
import { EngineDisposedError, InvalidRequestError, RequestAbortedError } from "../../../src/engine/errors.ts";
import type { GenerateOptions, GenerationChunk } from "../../../src/engine/types.ts";
import { LlmError, SourceError } from "../../../src/errors.ts";
import { WorkerEngine } from "../../../src/worker/client.ts";
import { serveEngine } from "../../../src/worker/host.ts";
import type { WorkerLoadProgress } from "../../../src/worker/protocol.ts";
import { syntheticModelPath } from "../support/fixtures.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const GREEDY: GenerateOptions = { temperature: 0, maxTokens: 10, ignoreEos: true };

const channels: MessageChannel[] = [];
afterEach(() => {
  for (const c of channels.splice(0)) {
    c.port1.close();
    c.port2.close();
  }
});

/** A host on one port and a client on the other. */
function connect(source: string | Uint8Array, options: ConstructorParameters<typeof WorkerEngine>[2] = {}): WorkerEngine {
  const channel = new MessageChannel();
  channels.push(channel);
  serveEngine(channel.port1);
  return new WorkerEngine(channel.port2, source, { backend: "cpu", ...options });
}

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

async function inThread(input: Parameters<WorkerEngine["generate"]>[0], options: GenerateOptions) {
  const engine = await loadEngine(MODEL, { backend: "cpu" });
  try {
    return await engine.generate(input, options).result;
  } finally {
    await engine.dispose();
  }
}

describe("WorkerEngine over a MessageChannel", () => {
  test("streams the same greedy text as the in-thread engine, prompt and chat alike", async () => {
    const chat = [{ role: "user", content: "Why is the sky blue?" }] as const;
    const expectedPrompt = await inThread("Once upon a time", GREEDY);
    const expectedChat = await inThread(chat, GREEDY);

    const progress: WorkerLoadProgress[] = [];
    const engine = connect(MODEL, { onProgress: (p) => progress.push(p) });
    try {
      await engine.ready;
      expect(engine.state).toBe("ready");
      expect(engine.info.model.architecture).toBe("llama");
      expect(engine.info.model.chatTemplate).toBe(true);
      expect(engine.info.origin).toEqual({ kind: "url", name: MODEL, cache: "off" });
      expect(engine.config.nLayers).toBe(2);
      expect(engine.description).toContain("cpu");
      expect(progress.map((p) => p.phase)).toContain("ready");

      const stream = engine.generate("Once upon a time", GREEDY);
      const got = await collect(stream);
      const result = await stream.result;
      expect(got.tokens).toEqual(expectedPrompt.tokens);
      expect(got.text).toBe(expectedPrompt.text);
      expect(result.text).toBe(expectedPrompt.text);
      expect(result.promptTokens).toEqual(expectedPrompt.promptTokens);
      // One chunk per token plus the closing one that carries the finish reason.
      expect(got.chunks).toBe(GREEDY.maxTokens! + 1);

      const chatResult = await engine.generate(chat, GREEDY).result;
      expect(chatResult.tokens).toEqual(expectedChat.tokens);
      expect(chatResult.promptTokens).toEqual(expectedChat.promptTokens);
    } finally {
      await engine.dispose();
    }
    expect(engine.state).toBe("disposed");
  });

  test("a model given as bytes loads too; requests made before ready are served", async () => {
    const { readFile } = await import("node:fs/promises");
    const bytes = new Uint8Array(await readFile(MODEL));
    const expected = await inThread("Hello there", GREEDY);
    const engine = connect(bytes);
    try {
      const early = engine.generate("Hello there", GREEDY);
      expect(engine.state).toBe("loading");
      expect((await early.result).tokens).toEqual(expected.tokens);
      expect(engine.info.origin.kind).toBe("bytes");
    } finally {
      await engine.dispose();
    }
  });

  test("errors keep their class, code and fields across the boundary", async () => {
    const engine = connect(MODEL);
    try {
      await engine.ready;
      const bad = engine.generate("x", { topP: 2 });
      const error = await bad.result.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidRequestError);
      expect(error).toBeInstanceOf(LlmError);
      expect(error).toMatchObject({ name: "InvalidRequestError", code: "INVALID_REQUEST", param: "topP" });
      // Iterating a failed stream throws the same error.
      await expect(collect(engine.generate("x", { maxTokens: 0 }))).rejects.toBeInstanceOf(InvalidRequestError);
    } finally {
      await engine.dispose();
    }

    const missing = connect("/no/such/model.gguf");
    const loadError = await missing.ready.catch((e: unknown) => e);
    expect(loadError).toBeInstanceOf(SourceError);
    expect(loadError).toMatchObject({ name: "SourceError", code: "NOT_FOUND", source: "/no/such/model.gguf" });
    expect(missing.state).toBe("failed");
    // Requests on an engine that failed to load fail with that error.
    await expect(missing.generate("x").result).rejects.toBe(loadError);
    await missing.dispose();
  });

  test("aborting a request mid-stream ends it at once and frees its slot", async () => {
    const engine = connect(MODEL, { maxSequences: 1 });
    try {
      await engine.ready;
      const controller = new AbortController();
      const stream = engine.generate("The quick brown fox", { temperature: 0, maxTokens: 400, ignoreEos: true, signal: controller.signal });
      const seen: string[] = [];
      const consumed = (async () => {
        for await (const chunk of stream) {
          seen.push(chunk.text);
          if (seen.length === 3) controller.abort();
        }
      })();
      await expect(consumed).rejects.toBeInstanceOf(RequestAbortedError);
      await expect(stream.result).rejects.toMatchObject({ name: "RequestAbortedError", code: "ABORTED" });
      expect(seen.length).toBeLessThan(400);
      // With a single slot, this request can only run once the aborted one let go of it.
      const next = await engine.generate("Hello there", GREEDY).result;
      expect(next.tokens).toHaveLength(GREEDY.maxTokens!);
      expect((await engine.stats()).active).toBe(0);

      const pre = new AbortController();
      pre.abort();
      await expect(engine.generate("x", { signal: pre.signal }).result).rejects.toBeInstanceOf(RequestAbortedError);
    } finally {
      await engine.dispose();
    }
  });

  test("dispose settles running and queued requests with EngineDisposedError, then answers", async () => {
    const engine = connect(MODEL, { maxSequences: 1 });
    await engine.ready;
    const running = engine.generate("A", { temperature: 0, maxTokens: 400, ignoreEos: true });
    const queued = engine.generate("B", GREEDY);
    const firstChunk = running[Symbol.asyncIterator]().next();
    await firstChunk;
    await engine.dispose();
    expect(engine.state).toBe("disposed");
    await expect(running.result).rejects.toBeInstanceOf(EngineDisposedError);
    await expect(queued.result).rejects.toBeInstanceOf(EngineDisposedError);
    await expect(engine.generate("C").result).rejects.toBeInstanceOf(EngineDisposedError);
    expect(() => engine.info).toThrow(EngineDisposedError);
    expect((await engine.stats()).state).toBe("disposed");
    await engine.dispose(); // twice is fine
  });

  test("dispose before the model is ready rejects ready with EngineDisposedError", async () => {
    const engine = connect(MODEL);
    const disposed = engine.dispose();
    await expect(engine.ready).rejects.toBeInstanceOf(EngineDisposedError);
    await disposed;
    expect(engine.state).toBe("disposed");
  });
});
