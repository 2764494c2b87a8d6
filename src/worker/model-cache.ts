/**
 * A cache of downloaded models in the browser's Origin Private File System (OPFS), so a
 * model loaded from a URL is downloaded once and read from disk after a reload.
 *
 * A model is written through a writable stream that commits only on close, so a cached
 * file is always complete: an interrupted download leaves nothing behind. The cached
 * `File` is disk-backed; the engine reads it in slices like any `Blob`, so a multi-GB
 * model never has to fit in memory. An `index.json` beside the files maps URLs to them
 * (OPFS directory listing needs async iteration, which not every runtime types or has).
 */
import { SourceError } from "../errors.ts";

/** Name of the OPFS directory that holds the cache. */
export const DEFAULT_MODEL_CACHE_NAME = "webgpu-llm-models";

/** One cached model. */
export interface CachedModel {
  readonly url: string;
  readonly size: number;
  /** When it was stored (ms since the epoch). */
  readonly storedAt: number;
  /** The server's ETag when it was downloaded, if it sent one. */
  readonly etag?: string;
  /** File name inside the cache directory. */
  readonly file: string;
}

/** Options of {@link ModelCache.download}. */
export interface DownloadOptions {
  readonly fetch?: typeof fetch;
  readonly signal?: AbortSignal;
  /** Called as bytes arrive (often: throttle it before posting or painting). */
  readonly onProgress?: (bytesLoaded: number, bytesTotal: number) => void;
  /** Bytes per range request (default 32 MiB): one failed request costs at most this much. */
  readonly chunkBytes?: number;
}

const INDEX_FILE = "index.json";
const DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024;

interface CacheIndex {
  readonly version: 1;
  readonly models: CachedModel[];
}

/** Where bytes of a download go; committed on close, discarded on abort. */
interface Sink {
  write(bytes: Uint8Array<ArrayBuffer>): Promise<void>;
  close(): Promise<void>;
  abort(): Promise<void>;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The cache directory's file name for a URL: a hash, so any URL makes a valid name. */
async function fileNameFor(url: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(url)));
  const hex = Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex}.gguf`;
}

/** `Content-Range: bytes 0-0/1234` → 1234. */
function totalFromContentRange(header: string | null): number | undefined {
  const m = header === null ? null : /\/\s*(\d+)\s*$/.exec(header);
  const n = m?.[1] === undefined ? NaN : Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

function isNotFound(err: unknown): boolean {
  return err instanceof DOMException && err.name === "NotFoundError";
}

export class ModelCache {
  readonly #dir: FileSystemDirectoryHandle;
  /** Index writes one after another: two downloads finishing together must not lose an entry. */
  #indexLock: Promise<unknown> = Promise.resolve();

  private constructor(dir: FileSystemDirectoryHandle) {
    this.#dir = dir;
  }

  /** Opens (creating) the cache; `undefined` where OPFS is missing or refused (e.g. some private modes). */
  static async open(name = DEFAULT_MODEL_CACHE_NAME): Promise<ModelCache | undefined> {
    const storage = globalThis.navigator?.storage;
    if (typeof storage?.getDirectory !== "function") return undefined;
    try {
      const root = await storage.getDirectory();
      return new ModelCache(await root.getDirectoryHandle(name, { create: true }));
    } catch {
      return undefined;
    }
  }

  /** Every complete cached model. */
  async list(): Promise<CachedModel[]> {
    const index = await this.#readIndex();
    const present: CachedModel[] = [];
    for (const entry of index.models) if ((await this.#fileOf(entry)) !== undefined) present.push(entry);
    return present;
  }

  /** The cached file of `url`, or `undefined`. */
  async get(url: string): Promise<File | undefined> {
    const entry = (await this.#readIndex()).models.find((m) => m.url === url);
    return entry === undefined ? undefined : this.#fileOf(entry);
  }

  /**
   * Downloads `url` into the cache with range requests of `chunkBytes` and returns the
   * cached file. A server that answers the first range request with the whole body (no
   * range support) is read from that answer instead. Aborting discards the partial file.
   */
  async download(url: string, options: DownloadOptions = {}): Promise<File> {
    const fetchFn = options.fetch ?? globalThis.fetch;
    const signal = options.signal;
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    const file = await fileNameFor(url);
    const handle = await this.#dir.getFileHandle(file, { create: true });
    const sink = await openSink(handle);
    let etag: string | undefined;
    let total: number;
    try {
      const first = await request(fetchFn, url, 0, chunkBytes - 1, signal);
      etag = first.headers.get("etag") ?? undefined;
      if (first.status === 200) {
        total = Number(first.headers.get("content-length") ?? NaN);
        const got = await pipe(first, sink, 0, Number.isSafeInteger(total) ? total : 0, options, url);
        if (!Number.isSafeInteger(total)) total = got;
        if (got !== total) throw new SourceError("FETCH_FAILED", url, `expected ${total} bytes, received ${got}`);
      } else {
        total = totalFromContentRange(first.headers.get("content-range")) ?? NaN;
        if (!Number.isSafeInteger(total)) {
          throw new SourceError("RANGE_UNSUPPORTED", url, "the server's range answer does not state the file size (Content-Range)");
        }
        let loaded = await pipeChunk(first, sink, 0, Math.min(chunkBytes, total), total, options, url);
        while (loaded < total) {
          const last = Math.min(loaded + chunkBytes, total) - 1;
          const res = await request(fetchFn, url, loaded, last, signal);
          if (res.status !== 206) {
            await res.body?.cancel();
            throw new SourceError("HTTP_STATUS", url, `a range request for bytes ${loaded}-${last} got HTTP ${res.status}`, res.status);
          }
          loaded += await pipeChunk(res, sink, loaded, last + 1 - loaded, total, options, url);
        }
      }
      await sink.close();
    } catch (err) {
      await sink.abort().catch(() => {});
      await this.#dir.removeEntry(file).catch(() => {});
      throw err;
    }
    const entry: CachedModel = { url, size: total, storedAt: Date.now(), file, ...(etag !== undefined ? { etag } : {}) };
    await this.#updateIndex((models) => [...models.filter((m) => m.url !== url), entry]);
    return handle.getFile();
  }

  /** Removes one model; resolves to whether it was cached. */
  async delete(url: string): Promise<boolean> {
    let found: CachedModel | undefined;
    await this.#updateIndex((models) => {
      found = models.find((m) => m.url === url);
      return models.filter((m) => m.url !== url);
    });
    if (found === undefined) return false;
    await this.#dir.removeEntry(found.file).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
    return true;
  }

  /** Removes every cached model; resolves to the bytes freed. */
  async clear(): Promise<number> {
    const models = await this.list();
    for (const m of models) await this.delete(m.url);
    return models.reduce((sum, m) => sum + m.size, 0);
  }

  async #fileOf(entry: CachedModel): Promise<File | undefined> {
    try {
      const file = await (await this.#dir.getFileHandle(entry.file)).getFile();
      return file.size === entry.size ? file : undefined;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async #readIndex(): Promise<CacheIndex> {
    try {
      const text = await (await (await this.#dir.getFileHandle(INDEX_FILE)).getFile()).text();
      const parsed: unknown = JSON.parse(text);
      if (isCacheIndex(parsed)) return parsed;
    } catch (err) {
      // A missing or unreadable index is an empty cache; the files it named are orphans.
      if (!isNotFound(err) && !(err instanceof SyntaxError)) throw err;
    }
    return { version: 1, models: [] };
  }

  #updateIndex(change: (models: CachedModel[]) => CachedModel[]): Promise<void> {
    const run = this.#indexLock.then(async () => {
      const index = await this.#readIndex();
      const next: CacheIndex = { version: 1, models: change([...index.models]) };
      const sink = await openSink(await this.#dir.getFileHandle(INDEX_FILE, { create: true }));
      try {
        await sink.write(new TextEncoder().encode(JSON.stringify(next)));
        await sink.close();
      } catch (err) {
        await sink.abort().catch(() => {});
        throw err;
      }
    });
    this.#indexLock = run.catch(() => {});
    return run;
  }
}

function isCacheIndex(v: unknown): v is CacheIndex {
  if (typeof v !== "object" || v === null || !("models" in v) || !Array.isArray(v.models)) return false;
  return v.models.every(
    (m: unknown) =>
      typeof m === "object" && m !== null && "url" in m && typeof m.url === "string" && "size" in m &&
      typeof m.size === "number" && "file" in m && typeof m.file === "string",
  );
}

async function request(fetchFn: typeof fetch, url: string, first: number, last: number, signal?: AbortSignal): Promise<Response> {
  let res: Response;
  try {
    res = await fetchFn(url, { headers: { Range: `bytes=${first}-${last}` }, signal });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw new SourceError("FETCH_FAILED", url, `request for bytes ${first}-${last} failed: ${messageOf(err)}`, undefined, {
      cause: err,
    });
  }
  if (res.status !== 200 && res.status !== 206) {
    await res.body?.cancel();
    throw new SourceError("HTTP_STATUS", url, `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`, res.status);
  }
  return res;
}

/** Streams one range answer into the sink; it must hold exactly `expected` bytes. */
async function pipeChunk(
  res: Response,
  sink: Sink,
  offset: number,
  expected: number,
  total: number,
  options: DownloadOptions,
  url: string,
): Promise<number> {
  const got = await pipe(res, sink, offset, total, options, url);
  if (got !== expected) {
    throw new SourceError("FETCH_FAILED", url, `asked for ${expected} bytes at offset ${offset}, the server sent ${got}`);
  }
  return got;
}

/** Streams a body into the sink, reporting progress; resolves to the bytes written. */
async function pipe(
  res: Response,
  sink: Sink,
  offset: number,
  total: number,
  options: DownloadOptions,
  url: string,
): Promise<number> {
  const reader = res.body?.getReader();
  if (!reader) return 0;
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await sink.write(value);
      n += value.byteLength;
      options.onProgress?.(offset + n, total);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    // An abort is the caller's decision: its reason goes through unchanged.
    if (options.signal?.aborted) throw options.signal.reason;
    if (err instanceof SourceError) throw err;
    throw new SourceError("FETCH_FAILED", url, `download failed at offset ${offset + n}: ${messageOf(err)}`, undefined, {
      cause: err,
    });
  }
  return n;
}

/** The part of a sync access handle we use (typed in the WebWorker lib only). */
interface SyncAccessHandle {
  write(bytes: Uint8Array<ArrayBuffer>, options: { at: number }): number;
  truncate(size: number): void;
  flush(): void;
  close(): void;
}

function hasSyncAccess(
  handle: FileSystemFileHandle,
): handle is FileSystemFileHandle & { createSyncAccessHandle(): Promise<SyncAccessHandle> } {
  return "createSyncAccessHandle" in handle && typeof handle.createSyncAccessHandle === "function";
}

/**
 * A writable stream where the runtime has one (it commits on close), else a synchronous
 * access handle (dedicated workers only; Safari's OPFS has only this), truncated first.
 */
async function openSink(handle: FileSystemFileHandle): Promise<Sink> {
  if (typeof handle.createWritable === "function") {
    const writable = await handle.createWritable({ keepExistingData: false });
    return {
      write: (bytes) => writable.write(bytes),
      close: () => writable.close(),
      abort: () => writable.abort(),
    };
  }
  if (!hasSyncAccess(handle)) {
    throw new SourceError("CACHE_UNAVAILABLE", handle.name, "this runtime can write neither a writable stream nor a sync access handle to OPFS");
  }
  const access = await handle.createSyncAccessHandle();
  access.truncate(0);
  let at = 0;
  return {
    write: async (bytes) => {
      at += access.write(bytes, { at });
    },
    close: async () => {
      access.flush();
      access.close();
    },
    abort: async () => {
      access.truncate(0);
      access.close();
    },
  };
}
