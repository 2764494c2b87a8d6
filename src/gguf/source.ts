/**
 * Random-access byte sources for model files: a local path, an http(s) URL read with
 * range requests, a `Blob` (a browser `File`), or bytes already in memory. The GGUF
 * reader sees only this interface, so every kind of input takes the same parse path.
 *
 * Browsers load this module too: `node:*` modules are imported only inside the path
 * branch, when a local file is actually opened.
 */
import { SourceError } from "../errors.ts";
import { type RangeFetch, readTimeoutOf, withReadTimeout } from "./read-timeout.ts";

/** Random-access, read-only bytes of one file. */
export interface ByteSource {
  /** The path, URL or blob name, for messages. */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /**
   * Exactly `length` bytes at `offset`. A range that is not inside `[0, size)` is a
   * `SourceError` (`READ_OUT_OF_RANGE`) naming the offset; nothing is allocated for it.
   * The result may be a view of memory the source owns: copy it before mutating. It is
   * backed by an `ArrayBuffer` (never a shared one), so it can go straight to WebGPU.
   */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array<ArrayBuffer>>;
  /** Releases the file handle, if any. Reads after `close` fail. */
  close(): Promise<void>;
}

/** What {@link openSource} accepts. */
export type SourceInput = string | URL | Blob | Uint8Array;

/** Options of {@link openSource}. */
export interface OpenSourceOptions {
  /** The `fetch` used for http(s) URLs (tests and proxies inject their own). */
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /**
   * For http(s) URLs: how long to wait for the next byte (ms, default 30 000; `Infinity`
   * for ever) before the read fails with `SourceError` `READ_TIMEOUT`. An idle timeout: a
   * slow transfer that keeps sending is never cut off.
   */
  readTimeoutMs?: number;
}

/** Whether `s` is an absolute http(s) URL (rather than a local path). */
export function isHttpUrl(s: string): boolean {
  if (!/^https?:\/\//i.test(s)) return false;
  try {
    new URL(s);
    return true;
  } catch {
    return false;
  }
}

/**
 * Opens `input` for random access. Strings that parse as http(s) URLs are read with
 * HTTP range requests, `file:` URLs and other strings are local paths.
 */
export async function openSource(input: SourceInput, options: OpenSourceOptions = {}): Promise<ByteSource> {
  options.signal?.throwIfAborted();
  if (input instanceof Uint8Array) return memorySource(input);
  if (input instanceof Blob) return blobSource(input);
  const text = input instanceof URL ? input.href : input;
  if (isHttpUrl(text)) {
    const fetchFn = withReadTimeout(options.fetch ?? globalThis.fetch, text, readTimeoutOf(options.readTimeoutMs));
    return openHttpSource(text, fetchFn, options.signal);
  }
  if (/^file:/i.test(text)) {
    const { fileURLToPath } = await import("node:url");
    return openFileSource(fileURLToPath(text));
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new SourceError("UNSUPPORTED_SOURCE", text, "only http(s) URLs, file: URLs and local paths can be opened");
  }
  return openFileSource(text);
}

/** Throws unless `[offset, offset + length)` lies inside a source of `size` bytes. */
export function checkReadRange(name: string, size: number, offset: number, length: number): void {
  const valid = Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0;
  if (!valid || offset + length > size) {
    throw new SourceError(
      "READ_OUT_OF_RANGE",
      name,
      `cannot read ${length} bytes at offset ${offset}: the source has ${size} bytes`,
    );
  }
}

function isArrayBufferBacked(bytes: Uint8Array): bytes is Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer;
}

/** Bytes already in memory; reads are views, not copies (unless the memory is shared). */
export function memorySource(input: Uint8Array, name = "memory"): ByteSource {
  const bytes = isArrayBufferBacked(input) ? input : new Uint8Array(input);
  return {
    name,
    size: bytes.byteLength,
    async read(offset, length, signal) {
      signal?.throwIfAborted();
      checkReadRange(name, bytes.byteLength, offset, length);
      return bytes.subarray(offset, offset + length);
    },
    close: () => Promise.resolve(),
  };
}

/** A `Blob` or `File`: each read is a `slice` of it. */
export function blobSource(blob: Blob): ByteSource {
  const name = typeof File !== "undefined" && blob instanceof File ? blob.name : "blob";
  return {
    name,
    size: blob.size,
    async read(offset, length, signal) {
      signal?.throwIfAborted();
      checkReadRange(name, blob.size, offset, length);
      const bytes = new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
      signal?.throwIfAborted();
      return bytes;
    },
    close: () => Promise.resolve(),
  };
}

function errorCode(err: unknown): string | undefined {
  if (err instanceof Error && "code" in err && typeof err.code === "string") return err.code;
  return undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Bytes per `read` call; larger reads loop, checking the abort signal between calls. Node's
 * `read` takes at most 2 GiB − 1 bytes per call, but the bound here is for aborts: a 1B
 * model's 215 MB embedding read in one call took 2.2 s from a cold disk, during which
 * Ctrl-C or `dispose()` could not stop the load. 16 MiB is at most ~0.2 s even then, and
 * costs nothing measurable in calls.
 */
const MAX_READ_PER_CALL = 16 * 1024 * 1024;

async function openFileSource(path: string): Promise<ByteSource> {
  const fs = await import("node:fs/promises");
  let handle: Awaited<ReturnType<typeof fs.open>>;
  try {
    handle = await fs.open(path, "r");
  } catch (err) {
    const code = errorCode(err);
    if (code === "ENOENT") throw new SourceError("NOT_FOUND", path, "no such file", undefined, { cause: err });
    throw new SourceError("IO_ERROR", path, `cannot open: ${messageOf(err)}`, undefined, { cause: err });
  }
  let size: number;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new SourceError("NOT_A_FILE", path, "not a regular file");
    size = stat.size;
  } catch (err) {
    await handle.close();
    if (err instanceof SourceError) throw err;
    throw new SourceError("IO_ERROR", path, `cannot stat: ${messageOf(err)}`, undefined, { cause: err });
  }
  let closed = false;
  return {
    name: path,
    size,
    async read(offset, length, signal) {
      signal?.throwIfAborted();
      if (closed) throw new SourceError("CLOSED", path, "read after close");
      checkReadRange(path, size, offset, length);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        signal?.throwIfAborted();
        let n: number;
        try {
          const chunk = Math.min(length - done, MAX_READ_PER_CALL);
          ({ bytesRead: n } = await handle.read(out, done, chunk, offset + done));
        } catch (err) {
          throw new SourceError("IO_ERROR", path, `read at offset ${offset + done} failed: ${messageOf(err)}`, undefined, {
            cause: err,
          });
        }
        // The file shrank since it was opened.
        if (n === 0) throw new SourceError("READ_OUT_OF_RANGE", path, `unexpected end of file at offset ${offset + done}`);
        done += n;
      }
      return out;
    },
    async close() {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}

/** `Content-Range: bytes 0-0/1234` → 1234; `undefined` when absent or `*`. */
function contentRangeTotal(header: string | null): number | undefined {
  const m = header === null ? null : /\/\s*(\d+)\s*$/.exec(header);
  if (!m?.[1]) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

async function discard(res: Response): Promise<void> {
  // Without this a 200 answer to a range probe would go on downloading the whole model.
  try {
    await res.body?.cancel();
  } catch {
    // The body is unwanted either way.
  }
}

function rangeUnsupported(url: string, res: Response): SourceError {
  return new SourceError(
    "RANGE_UNSUPPORTED",
    url,
    `the server answered a range request with HTTP ${res.status} and the whole body; ` +
      "models are read in parts, so the server must support HTTP range requests (206 Partial Content)",
    res.status,
  );
}

function statusError(url: string, res: Response): SourceError {
  const text = res.statusText ? ` ${res.statusText}` : "";
  return new SourceError("HTTP_STATUS", url, `HTTP ${res.status}${text}`, res.status);
}

async function rangeFetch(
  url: string,
  fetchFn: RangeFetch,
  first: number,
  last: number,
  signal?: AbortSignal,
): Promise<Response> {
  try {
    return await fetchFn(url, { headers: { Range: `bytes=${first}-${last}` }, signal });
  } catch (err) {
    // An abort is the caller's own decision: let its reason through unchanged.
    if (signal?.aborted) throw signal.reason;
    if (err instanceof SourceError) throw err; // READ_TIMEOUT
    throw new SourceError("FETCH_FAILED", url, `request for bytes ${first}-${last} failed: ${messageOf(err)}`, undefined, {
      cause: err,
    });
  }
}

/**
 * A server that ignores Range (Python's `http.server`, some static hosts) answers the probe
 * with 200 and the whole file. Reading in parts is then impossible (every read would fetch
 * everything again), so the body already on its way is kept in memory and read from there:
 * one download, as slow as the file is large, instead of a refusal.
 */
async function wholeBodySource(url: string, res: Response, signal?: AbortSignal): Promise<ByteSource> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = new Uint8Array(await res.arrayBuffer());
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw new SourceError(
      "FETCH_FAILED",
      url,
      `the server ignores range requests, so the whole file is read into memory, and that failed: ${messageOf(err)}`,
      res.status,
      { cause: err },
    );
  }
  return memorySource(bytes, url);
}

async function openHttpSource(url: string, fetchFn: RangeFetch, signal?: AbortSignal): Promise<ByteSource> {
  // A one-byte range probe gives the size and proves range support in one request;
  // HEAD would prove neither (many servers omit Accept-Ranges, and CDNs answer HEAD differently).
  const probe = await rangeFetch(url, fetchFn, 0, 0, signal);
  if (probe.status === 200) return wholeBodySource(url, probe, signal);
  let size: number | undefined;
  if (probe.status === 206) size = contentRangeTotal(probe.headers.get("content-range"));
  else if (probe.status === 416) size = contentRangeTotal(probe.headers.get("content-range")) === 0 ? 0 : undefined;
  await discard(probe);
  if (probe.status !== 206 && probe.status !== 416) throw statusError(url, probe);
  if (size === undefined) {
    throw new SourceError("RANGE_UNSUPPORTED", url, "the server's range answer does not state the file size (Content-Range)");
  }
  const total = size;
  return {
    name: url,
    size: total,
    async read(offset, length, readSignal) {
      readSignal?.throwIfAborted();
      checkReadRange(url, total, offset, length);
      if (length === 0) return new Uint8Array(0);
      const res = await rangeFetch(url, fetchFn, offset, offset + length - 1, readSignal);
      if (res.status !== 206) {
        await discard(res);
        throw res.status === 200 ? rangeUnsupported(url, res) : statusError(url, res);
      }
      let bytes: Uint8Array<ArrayBuffer>;
      try {
        bytes = new Uint8Array(await res.arrayBuffer());
      } catch (err) {
        if (readSignal?.aborted) throw readSignal.reason;
        if (err instanceof SourceError) throw err; // READ_TIMEOUT
        throw new SourceError("FETCH_FAILED", url, `reading bytes at offset ${offset} failed: ${messageOf(err)}`, undefined, {
          cause: err,
        });
      }
      const sentStart = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "")?.[1];
      if (sentStart !== undefined && Number(sentStart) !== offset) {
        throw new SourceError("FETCH_FAILED", url, `asked for bytes at offset ${offset}, the server sent them from ${sentStart}`, 206);
      }
      if (bytes.byteLength !== length) {
        throw new SourceError(
          "FETCH_FAILED",
          url,
          `asked for ${length} bytes at offset ${offset}, the server sent ${bytes.byteLength}`,
          res.status,
        );
      }
      return bytes;
    },
    close: () => Promise.resolve(),
  };
}
