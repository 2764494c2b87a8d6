/**
 * Every source kind through the same reader: memory, Blob/File, local paths (plain,
 * file: URL, split), and http(s) against a real local server with and without range
 * support. Plus the errors a user meets first: 404, no ranges, a text file, an LFS pointer.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GGUFError, LlmError, SourceError } from "../../../src/errors.ts";
import { type GGUFFile, openGGUF } from "../../../src/gguf/reader.ts";
import { openSource } from "../../../src/gguf/source.ts";
import { encodeGGUF, writeGGUFFile } from "../../../src/gguf/writer.ts";
import { tinyModelSpec } from "./fixtures.ts";

let dir: string;
let modelPath: string;
let modelBytes: Uint8Array<ArrayBuffer>;
let server: Server;
let base: string;
const requests: string[] = [];

/** Serves `dir`: `/range/<file>` honours Range, `/norange/<file>` always sends everything. */
function startServer(): Promise<string> {
  server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://x");
      const [, mode, name] = url.pathname.split("/");
      requests.push(`${mode} ${req.headers.range ?? "-"}`);
      let body: Buffer;
      try {
        body = await readFile(join(dir, name ?? ""));
      } catch {
        res.writeHead(404, "Not Found").end("not found");
        return;
      }
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
      if (mode !== "range" || !range) {
        res.writeHead(200, { "content-length": body.length }).end(body);
        return;
      }
      const start = Number(range[1]);
      const end = Math.min(Number(range[2]), body.length - 1);
      if (start >= body.length) {
        res.writeHead(416, { "content-range": `bytes */${body.length}` }).end();
        return;
      }
      res.writeHead(206, { "content-range": `bytes ${start}-${end}/${body.length}`, "content-length": end - start + 1 });
      res.end(body.subarray(start, end + 1));
    })();
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gguf-sources-"));
  modelBytes = encodeGGUF(tinyModelSpec({ nLayers: 1 }));
  modelPath = join(dir, "tiny.gguf");
  await writeFile(modelPath, modelBytes);
  await writeGGUFFile(join(dir, "split.gguf"), tinyModelSpec({ nLayers: 1 }), { split: 3 });
  await writeFile(join(dir, "notes.txt"), "These are not the weights you are looking for.\n".repeat(4));
  await writeFile(join(dir, "pointer.gguf"), "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n");
  base = await startServer();
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

/** Everything a reader exposes, tensor bytes included, in a comparable form. */
async function snapshot(file: GGUFFile) {
  const tensors = [];
  for (const t of file.tensors) tensors.push({ ...t, bytes: Buffer.from(await file.readTensor(t)).toString("base64") });
  return { version: file.version, alignment: file.alignment, metadata: file.metadata, types: file.metadataTypes, tensors };
}

async function rejection(p: Promise<unknown>): Promise<LlmError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(LlmError);
    if (err instanceof LlmError) return err;
  }
  throw new Error("expected a rejection");
}

describe("one reader, every source", () => {
  it("path, file: URL, memory, Blob, File and http range URL give identical files", async () => {
    const reference = await snapshot(await openGGUF(modelBytes));
    const inputs = [
      modelPath,
      pathToFileURL(modelPath),
      pathToFileURL(modelPath).href,
      new Blob([modelBytes]),
      new File([modelBytes], "tiny.gguf"),
      `${base}/range/tiny.gguf`,
      new URL(`${base}/range/tiny.gguf`),
    ];
    for (const input of inputs) {
      const file = await openGGUF(input);
      expect(await snapshot(file), String(input)).toEqual(reference);
      expect(file.fileSize).toBe(modelBytes.byteLength);
      await file.close();
    }
  });

  it("names sources after the path, URL or File", async () => {
    const path = await openSource(modelPath);
    expect(path.name).toBe(modelPath);
    await path.close();
    expect((await openSource(new File([modelBytes], "x.gguf"))).name).toBe("x.gguf");
    expect((await openSource(`${base}/range/tiny.gguf`)).name).toBe(`${base}/range/tiny.gguf`);
  });

  it("split files over http open every shard", async () => {
    const local = await openGGUF(join(dir, "split-00001-of-00003.gguf"));
    const remote = await openGGUF(`${base}/range/split-00001-of-00003.gguf`);
    expect(remote.shardCount).toBe(3);
    expect(await snapshot(remote)).toEqual(await snapshot(local));
    await Promise.all([local.close(), remote.close()]);
  });

  it("reads tensors with range requests, not whole-file downloads", async () => {
    requests.length = 0;
    const file = await openGGUF(`${base}/range/tiny.gguf`);
    await file.readTensor("output_norm.weight");
    await file.close();
    expect(requests.every((r) => r.startsWith("range bytes="))).toBe(true);
    // The size probe, the parser's one header chunk, one tensor.
    expect(requests).toHaveLength(3);
  });

  it("reads past the end fail naming the offset, without allocating", async () => {
    for (const input of [modelPath, modelBytes, new Blob([modelBytes]), `${base}/range/tiny.gguf`]) {
      const source = await openSource(input);
      for (const [offset, length] of [[source.size, 1], [0, source.size + 1], [2 ** 60, 8], [-1, 4], [0, 2 ** 60]]) {
        const err = await rejection(source.read(offset, length));
        expect(err).toBeInstanceOf(SourceError);
        expect(err.code).toBe("READ_OUT_OF_RANGE");
        expect(err.message).toContain(`offset ${offset}`);
      }
      await source.close();
    }
  });

  it("an aborted read rejects with the abort reason", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    for (const input of [modelPath, modelBytes, `${base}/range/tiny.gguf`]) {
      const source = await openSource(input);
      await expect(source.read(0, 4, controller.signal)).rejects.toThrow("stop");
      await source.close();
    }
    await expect(openGGUF(modelPath, { signal: controller.signal })).rejects.toThrow("stop");
  });
});

describe("what users meet first", () => {
  it("a server without range support (200, whole body): the file is downloaded once and read from memory", async () => {
    requests.length = 0;
    const url = `${base}/norange/tiny.gguf`;
    const file = await openGGUF(url);
    expect(await snapshot(file)).toEqual(await snapshot(await openGGUF(modelBytes)));
    expect(file.fileSize).toBe(modelBytes.byteLength);
    await file.close();
    // The probe's answer was the whole file; nothing else went to the server.
    expect(requests).toEqual(["norange bytes=0-0"]);
  });

  it("404: HTTP_STATUS naming URL and status", async () => {
    const url = `${base}/range/missing.gguf`;
    const err = await rejection(openGGUF(url));
    expect(err).toBeInstanceOf(SourceError);
    expect(err.code).toBe("HTTP_STATUS");
    expect(err.message).toContain(url);
    expect(err.message).toContain("404");
    expect(err instanceof SourceError && err.status).toBe(404);
  });

  it("nothing listening: FETCH_FAILED", async () => {
    const closed = createServer();
    const port = await new Promise<number>((resolve) => closed.listen(0, "127.0.0.1", () => resolve((closed.address() as AddressInfo).port)));
    await new Promise((resolve) => closed.close(resolve));
    expect((await rejection(openGGUF(`http://127.0.0.1:${port}/x.gguf`))).code).toBe("FETCH_FAILED");
  });

  it("a missing local file: NOT_FOUND naming the path", async () => {
    const path = join(dir, "nope.gguf");
    const err = await rejection(openGGUF(path));
    expect(err.code).toBe("NOT_FOUND");
    expect(err.message).toContain(path);
  });

  it("a directory: NOT_A_FILE", async () => {
    expect((await rejection(openGGUF(dir))).code).toBe("NOT_A_FILE");
  });

  it("a text file: NOT_GGUF", async () => {
    const err = await rejection(openGGUF(join(dir, "notes.txt")));
    expect(err).toBeInstanceOf(GGUFError);
    expect(err.code).toBe("NOT_GGUF");
    expect(err.message).toContain("notes.txt");
    expect(err.message).toContain("[54 68 65 73]"); // "Thes"
  });

  it("a Git LFS pointer says so", async () => {
    const err = await rejection(openGGUF(join(dir, "pointer.gguf")));
    expect(err.code).toBe("NOT_GGUF");
    expect(err.message).toContain("Git LFS pointer");
  });

  it("an empty file and an unsupported URL scheme", async () => {
    await writeFile(join(dir, "empty.gguf"), "");
    expect((await rejection(openGGUF(join(dir, "empty.gguf")))).code).toBe("NOT_GGUF");
    expect((await rejection(openGGUF("s3://bucket/model.gguf"))).code).toBe("UNSUPPORTED_SOURCE");
  });
});

describe("stalled servers under Node's fetch", () => {
  /** A server that holds every request open (after 10 bytes of a 206 body in `partial` mode) until `close()`. */
  async function stallingServer(partial: boolean): Promise<{ url: string; stalled: Promise<void>; close(): Promise<void> }> {
    const held: ServerResponse[] = [];
    let markStalled!: () => void;
    const stalled = new Promise<void>((resolve) => (markStalled = resolve));
    const stalling = createServer((req, res) => {
      if (partial && req.headers.range === "bytes=0-0") {
        res.writeHead(206, { "content-range": "bytes 0-0/1000", "content-length": "1" }).end("G");
        return;
      }
      held.push(res);
      if (partial) {
        res.writeHead(206, { "content-range": "bytes 0-99/1000", "content-length": "100" });
        res.write(Buffer.alloc(10));
      }
      markStalled();
    });
    await new Promise<void>((resolve) => stalling.listen(0, "127.0.0.1", resolve));
    const { port } = stalling.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}/model.gguf`,
      stalled,
      close: () => {
        for (const res of held) res.destroy();
        return new Promise<void>((resolve) => stalling.close(() => resolve()));
      },
    };
  }

  it("no answer at all: READ_TIMEOUT naming the URL and the time", async () => {
    const silent = await stallingServer(false);
    try {
      const err = await rejection(openSource(silent.url, { readTimeoutMs: 150 }));
      expect(err).toBeInstanceOf(SourceError);
      expect(err.code).toBe("READ_TIMEOUT");
      expect(err.message).toContain(silent.url);
      expect(err.message).toContain("150 ms");
    } finally {
      await silent.close();
    }
  });

  it("headers and 10 bytes, then nothing: READ_TIMEOUT on the read", async () => {
    const partial = await stallingServer(true);
    try {
      const source = await openSource(partial.url, { readTimeoutMs: 150 });
      const err = await rejection(source.read(0, 100));
      expect(err.code).toBe("READ_TIMEOUT");
      expect(err.message).toContain("bytes 0-99");
    } finally {
      await partial.close();
    }
  });

  it("an abort while the server is silent rejects with the abort, the timeout aside", async () => {
    const silent = await stallingServer(false);
    try {
      const controller = new AbortController();
      const opening = openSource(silent.url, { signal: controller.signal, readTimeoutMs: Infinity });
      await silent.stalled;
      controller.abort();
      await expect(opening).rejects.toMatchObject({ name: "AbortError" });
    } finally {
      await silent.close();
    }
  });
});
