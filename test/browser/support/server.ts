/**
 * A small HTTP server for the browser tests: static files with HTTP range requests (or,
 * like plain static servers, without), CORS, an optional bandwidth cap (so a download
 * lasts long enough to be seen), and a log of every request with the bytes it was sent, so
 * a test can prove what was (not) downloaded.
 */
import { createReadStream, statSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { extname, join, normalize, resolve, sep } from "node:path";

/** One answered request. */
export interface ServedRequest {
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
  status: number;
  /** Body bytes sent. */
  bytes: number;
}

export interface TestServer {
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  readonly origin: string;
  readonly log: ServedRequest[];
  /** Body bytes sent for `path` (or for everything). */
  bytesServed(path?: string): number;
  close(): Promise<void>;
}

export interface ServerOptions {
  /** Directory served at `/` (index.html for `/`). */
  readonly root?: string;
  /** Extra files: URL path → file on disk. */
  readonly files?: Readonly<Record<string, string>>;
  /** Caps the body rate of `files` (bytes per second). */
  readonly throttleBytesPerSecond?: number;
  /**
   * Answers every request with 200 and the whole file, Range or not, and offers no
   * `Accept-Ranges`: a plain static server, like `python3 -m http.server`.
   */
  readonly ignoreRange?: boolean;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".gguf": "application/octet-stream",
};

function parseRange(header: string | undefined, size: number): [number, number] | null | "invalid" {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return "invalid";
  const start = m[1] === "" ? Math.max(0, size - Number(m[2])) : Number(m[1]);
  const end = m[1] === "" || m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  return start > end || start >= size ? "invalid" : [start, end];
}

function resolveFile(options: ServerOptions, path: string): { file: string; throttled: boolean } | undefined {
  const extra = options.files?.[path];
  if (extra) return { file: extra, throttled: true };
  if (!options.root) return undefined;
  const root = resolve(options.root);
  const file = normalize(join(root, path === "/" ? "index.html" : decodeURIComponent(path)));
  if (file !== root && !file.startsWith(root + sep)) return undefined;
  try {
    return statSync(file).isFile() ? { file, throttled: false } : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves when `res` can take more, or has closed. */
function writable(res: ServerResponse): Promise<void> {
  return new Promise((resolveWritable) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolveWritable();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** Sends `[start, end]` of `file`, at most `rate` bytes per second when given. */
async function sendBody(res: ServerResponse, file: string, start: number, end: number, entry: ServedRequest, rate?: number): Promise<void> {
  const began = Date.now();
  const stream = createReadStream(file, { start, end, highWaterMark: 16 * 1024 });
  try {
    for await (const chunk of stream) {
      if (res.destroyed) break;
      const bytes: Buffer = chunk;
      entry.bytes += bytes.length;
      if (!res.write(bytes)) await writable(res);
      // Hold back until the bytes sent so far fit the budget for the time elapsed.
      const due = rate ? (entry.bytes / rate) * 1000 - (Date.now() - began) : 0;
      if (due > 0) await new Promise((resolveDelay) => setTimeout(resolveDelay, due));
    }
    res.end();
  } catch {
    res.destroy();
  } finally {
    stream.destroy();
  }
}

function handle(options: ServerOptions, log: ServedRequest[], req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? "/").split("?")[0]!;
  const range = req.headers.range;
  res.setHeader("Access-Control-Allow-Origin", "*");
  res.setHeader("Access-Control-Allow-Headers", "Range");
  res.setHeader("Access-Control-Expose-Headers", "Content-Range, Content-Length, Accept-Ranges, ETag");
  res.setHeader("Cache-Control", "no-store");
  const entry: ServedRequest = { method: req.method ?? "GET", path, range, status: 0, bytes: 0 };
  log.push(entry);
  if (req.method === "OPTIONS") {
    entry.status = 204;
    res.writeHead(204).end();
    return;
  }
  const found = resolveFile(options, path);
  if (!found) {
    entry.status = 404;
    res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
    return;
  }
  const size = statSync(found.file).size;
  const r = options.ignoreRange ? null : parseRange(range, size);
  if (!options.ignoreRange) res.setHeader("Accept-Ranges", "bytes");
  res.setHeader("Content-Type", TYPES[extname(found.file)] ?? "application/octet-stream");
  if (r === "invalid") {
    entry.status = 416;
    res.writeHead(416, { "Content-Range": `bytes */${size}` }).end();
    return;
  }
  const [start, end] = r ?? [0, size - 1];
  entry.status = r ? 206 : 200;
  res.writeHead(entry.status, {
    "Content-Length": String(end - start + 1),
    ...(r ? { "Content-Range": `bytes ${start}-${end}/${size}` } : {}),
  });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  void sendBody(res, found.file, start, end, entry, found.throttled ? options.throttleBytesPerSecond : undefined);
}

/** Starts a server on a free port of 127.0.0.1. */
export async function startServer(options: ServerOptions): Promise<TestServer> {
  const log: ServedRequest[] = [];
  const server = createServer((req, res) => handle(options, log, req, res));
  await new Promise<void>((resolveListen) => server.listen(0, "127.0.0.1", resolveListen));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the test server has no TCP address");
  const port = address.port;
  return {
    origin: `http://127.0.0.1:${port}`,
    log,
    bytesServed: (path) => log.filter((e) => path === undefined || e.path === path).reduce((sum, e) => sum + e.bytes, 0),
    close: () =>
      new Promise<void>((resolveClose) => {
        server.closeAllConnections();
        server.close(() => resolveClose());
      }),
  };
}
