/**
 * Opens GGUF files (single or split into shards) from any {@link ByteSource}.
 *
 * The header (metadata and tensor infos) is parsed by `@huggingface/gguf`, fed through
 * a `fetch` that serves its range requests from our source, so paths, URLs, blobs and
 * memory all take the same parse path. Around it we check what that parser does not:
 * the magic (its own error code), version 2 or 3 little-endian only, counts that fit the
 * file (CWE-400), the alignment, tensor shapes and types, and that every tensor's bytes
 * lie inside its file. Tensor data is never read during open.
 */
import { gguf } from "@huggingface/gguf";
import { GGUFError, LlmError, UnsupportedTensorTypeError } from "../errors.ts";
import { BLOCK_LAYOUTS, type GGMLType, ggmlTypeName } from "./ggml-type.ts";
import { GGUFValueType, type Metadata, type MetadataTypeInfo, type MetadataValue } from "./metadata.ts";
import { type ByteSource, isHttpUrl, type OpenSourceOptions, openSource, type SourceInput } from "./source.ts";

/** Alignment of tensor data when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Most dimensions a GGML tensor has (`GGML_MAX_DIMS`). */
export const GGUF_MAX_DIMS = 4;

/**
 * Most tensors a header may declare: far above any real model (a 405B llama has about
 * 1,100) and below what would make a bogus count cost real time or memory (CWE-400).
 */
export const GGUF_MAX_TENSORS = 1_000_000;
/** Most metadata entries a header may declare (real models: a few dozen); CWE-400 as above. */
export const GGUF_MAX_KV = 100_000;

/** The smallest encodings of one key/value pair and one tensor info (v2/v3): see {@link checkCounts}. */
const MIN_KV_BYTES = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8;
const FIXED_HEADER_BYTES = 4 + 4 + 8 + 8;
/** `@huggingface/gguf` reads in chunks of this size (its `HTTP_CHUNK_SIZE`). */
const PARSER_CHUNK_BYTES = 2_000_000;

/** One tensor of a GGUF file. */
export interface GGUFTensorInfo {
  readonly name: string;
  readonly type: GGMLType;
  /** `ne`, innermost dimension first, as GGUF stores it (a row of a matrix is `shape[0]` values). */
  readonly shape: readonly number[];
  readonly nElements: number;
  readonly byteLength: number;
  /** Index of the shard (file) holding the data; 0 for unsplit files. */
  readonly shard: number;
  /** Absolute byte offset of the data in its shard. */
  readonly offset: number;
}

/** An open GGUF model: the header parsed, tensor data read on demand. */
export interface GGUFFile {
  /** The path, URL or blob name (of the first shard). */
  readonly name: string;
  readonly version: 2 | 3;
  readonly alignment: number;
  /** The first shard's metadata. */
  readonly metadata: Metadata;
  /** The stored type of each metadata entry (to re-write a file faithfully). */
  readonly metadataTypes: Readonly<Record<string, MetadataTypeInfo>>;
  /** Every tensor of every shard, in file order. */
  readonly tensors: readonly GGUFTensorInfo[];
  tensor(name: string): GGUFTensorInfo | undefined;
  /** Bytes of all shards together. */
  readonly fileSize: number;
  /** Number of shards (1 for an unsplit file). */
  readonly shardCount: number;
  /** The raw bytes of one tensor, in its GGML block layout. */
  readTensor(nameOrInfo: string | GGUFTensorInfo, signal?: AbortSignal): Promise<Uint8Array<ArrayBuffer>>;
  /** Closes every shard's source. */
  close(): Promise<void>;
}

/** Options of {@link openGGUF}: those of every shard's source (`fetch`, `signal`, `readTimeoutMs`). */
export type OpenGGUFOptions = OpenSourceOptions;

/** `-00001-of-00003.gguf` at the end of a shard's path (llama.cpp's `llama_split_path`). */
const SHARD_SUFFIX = /-(\d{5})-of-(\d{5})\.gguf$/;

/** The path of shard `index` (0-based) of `count`, for a prefix without `.gguf`. */
export function shardPath(prefix: string, index: number, count: number): string {
  const five = (n: number) => String(n).padStart(5, "0");
  return `${prefix}-${five(index + 1)}-of-${five(count)}.gguf`;
}

/**
 * Opens a GGUF file and parses its header; tensor data is read later, on demand.
 * A path or URL named `…-00001-of-0000N.gguf` opens all N shards. The returned file owns
 * its sources (including a `ByteSource` passed in): `close()` closes them.
 */
export async function openGGUF(
  input: SourceInput | ByteSource,
  options: OpenGGUFOptions = {},
): Promise<GGUFFile> {
  const shardNames = typeof input === "string" || input instanceof URL ? shardSiblings(input) : undefined;
  const first = isByteSource(input) ? input : await openSource(input, options);
  const opened: ByteSource[] = isByteSource(input) ? [] : [first];
  try {
    const head = await parseShard(first, options.signal);
    const split = splitInfo(head, first.name, 0);
    if (split.count === 1) return assemble([head]);
    if (split.index !== 0 || !shardNames || shardNames.length !== split.count) {
      const where =
        split.index !== 0
          ? "it is not the first"
          : shardNames
            ? `its name says ${shardNames.length}`
            : "its name does not follow -00001-of-0000N.gguf";
      throw new GGUFError(
        "GGUF_SPLIT",
        `this is shard ${split.index + 1} of ${split.count} (split.count), but ${where}; open the first shard by its original name`,
        { file: first.name, field: "split.count" },
      );
    }
    // allSettled, not all: every source opened must be in `opened` before any is closed.
    const results = await Promise.allSettled(
      shardNames.slice(1).map(async (name, i) => {
        const source = await openSource(name, options);
        opened.push(source);
        const shard = await parseShard(source, options.signal);
        const info = splitInfo(shard, source.name, i + 1);
        if (info.index !== i + 1 || info.count !== split.count) {
          throw new GGUFError(
            "GGUF_SPLIT",
            `expected shard ${i + 2} of ${split.count}, found split.no=${info.index} split.count=${info.count}`,
            { file: source.name, field: "split.no" },
          );
        }
        return shard;
      }),
    );
    const rest: ParsedShard[] = [];
    for (const r of results) {
      if (r.status === "rejected") throw r.reason;
      rest.push(r.value);
    }
    return assemble([head, ...rest], split.tensorCount);
  } catch (err) {
    await Promise.allSettled(opened.map((s) => s.close()));
    throw err;
  }
}

function isByteSource(x: SourceInput | ByteSource): x is ByteSource {
  return !(x instanceof Uint8Array) && !(x instanceof Blob) && !(x instanceof URL) && typeof x !== "string";
}

/** All shard names when `input` names the first shard of a split; otherwise `undefined`. */
function shardSiblings(input: string | URL): string[] | undefined {
  const text = input instanceof URL ? input.href : input;
  if (isHttpUrl(text)) {
    const url = new URL(text);
    const names = siblingsOf(url.pathname);
    return names?.map((p) => {
      const u = new URL(url.href);
      u.pathname = p;
      return u.href;
    });
  }
  return siblingsOf(text);
}

function siblingsOf(path: string): string[] | undefined {
  const m = SHARD_SUFFIX.exec(path);
  if (!m || m[1] !== "00001") return undefined;
  const count = Number(m[2]);
  if (count < 1) return undefined;
  const prefix = path.slice(0, m.index);
  return Array.from({ length: count }, (_, i) => shardPath(prefix, i, count));
}

/** One parsed shard: header facts, with tensor offsets already absolute. */
interface ParsedShard {
  readonly source: ByteSource;
  readonly version: 2 | 3;
  readonly alignment: number;
  readonly metadata: Metadata;
  readonly metadataTypes: Readonly<Record<string, MetadataTypeInfo>>;
  readonly tensors: readonly Omit<GGUFTensorInfo, "shard">[];
}

interface SplitInfo {
  readonly index: number;
  readonly count: number;
  readonly tensorCount?: number;
}

function splitInfo(shard: ParsedShard, file: string, expectedIndex: number): SplitInfo {
  const int = (key: string): number | undefined => {
    const v = shard.metadata[key];
    if (v === undefined) return undefined;
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
      throw new GGUFError("GGUF_SPLIT", `expected a whole number, found ${String(v)}`, { file, field: key });
    }
    return n;
  };
  const count = int("split.count") ?? 1;
  const index = int("split.no") ?? expectedIndex;
  if (count < 1 || index >= count) {
    throw new GGUFError("GGUF_SPLIT", `split.no=${index} does not fit split.count=${count}`, { file, field: "split.no" });
  }
  return { index, count, tensorCount: int("split.tensors.count") };
}

function assemble(shards: readonly ParsedShard[], expectedTensors?: number): GGUFFile {
  const first = shards[0];
  if (!first) throw new GGUFError("GGUF_SPLIT", "no shards");
  const tensors: GGUFTensorInfo[] = [];
  const byName = new Map<string, GGUFTensorInfo>();
  shards.forEach((shard, index) => {
    for (const t of shard.tensors) {
      if (byName.has(t.name)) {
        throw new GGUFError("GGUF_DUPLICATE_TENSOR", `tensor "${t.name}" appears twice`, {
          file: shard.source.name,
          field: t.name,
        });
      }
      const info: GGUFTensorInfo = Object.freeze({ ...t, shard: index });
      tensors.push(info);
      byName.set(info.name, info);
    }
  });
  if (expectedTensors !== undefined && expectedTensors !== tensors.length) {
    throw new GGUFError(
      "GGUF_SPLIT",
      `split.tensors.count says ${expectedTensors} tensors, the ${shards.length} shards hold ${tensors.length}`,
      { file: first.source.name, field: "split.tensors.count" },
    );
  }
  const sources = shards.map((s) => s.source);
  return {
    name: first.source.name,
    version: first.version,
    alignment: first.alignment,
    metadata: first.metadata,
    metadataTypes: first.metadataTypes,
    tensors,
    tensor: (name) => byName.get(name),
    fileSize: sources.reduce((sum, s) => sum + s.size, 0),
    shardCount: shards.length,
    readTensor(nameOrInfo, signal) {
      const name = typeof nameOrInfo === "string" ? nameOrInfo : nameOrInfo.name;
      const info = byName.get(name);
      if (!info) {
        return Promise.reject(new GGUFError("TENSOR_MISSING", `no tensor named "${name}"`, { file: first.source.name, field: name }));
      }
      const source = sources[info.shard];
      if (!source) return Promise.reject(new GGUFError("GGUF_SPLIT", `tensor "${name}" names missing shard ${info.shard}`));
      return source.read(info.offset, info.byteLength, signal);
    },
    async close() {
      await Promise.all(sources.map((s) => s.close()));
    },
  };
}

/** Parses one file's header and checks everything that can be checked without reading data. */
async function parseShard(source: ByteSource, signal?: AbortSignal): Promise<ParsedShard> {
  const file = source.name;
  // The parser's first request is this chunk: read it once, check the fixed header in it,
  // and serve the parser from it (one request less on a URL).
  const firstChunk = await source.read(0, Math.min(source.size, PARSER_CHUNK_BYTES), signal);
  const head = firstChunk.subarray(0, FIXED_HEADER_BYTES);
  checkMagic(head, file);
  if (head.byteLength < FIXED_HEADER_BYTES) {
    throw new GGUFError("GGUF_TRUNCATED", `the file ends inside the ${FIXED_HEADER_BYTES}-byte fixed header`, {
      file,
      offset: head.byteLength,
    });
  }
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const version = checkVersion(view, file);
  checkCounts(view.getBigUint64(8, true), view.getBigUint64(16, true), source.size, file);

  const parsed = await parseWithLibrary(source, firstChunk, signal);
  const [, headerEnd] = parsed.tensorInfoByteRange;
  if (headerEnd > source.size) {
    throw new GGUFError(
      "GGUF_TRUNCATED",
      `the header (metadata and tensor infos) needs ${headerEnd} bytes, the file has only ${source.size}`,
      { file, offset: source.size },
    );
  }
  const { metadata, metadataTypes } = collectMetadata(parsed.typedMetadata, Number(view.getBigUint64(16, true)), file);
  const alignment = readAlignment(metadata, metadataTypes, file);
  const dataOffset = Math.ceil(headerEnd / alignment) * alignment;
  const tensors = parsed.tensorInfos.map((t) => checkTensor(t, { file, alignment, dataOffset, size: source.size }));
  return { source, version, alignment, metadata, metadataTypes, tensors };
}

const MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"

function checkMagic(head: Uint8Array, file: string): void {
  if (head.byteLength >= 4 && MAGIC.every((b, i) => head[i] === b)) return;
  const text = new TextDecoder().decode(head);
  const hex = Array.from(head.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
  let hint = "";
  // The two usual ways to end up with a non-model file under a model's name.
  if (text.startsWith("version https://git-lfs")) hint = "; this is a Git LFS pointer: fetch the real file (git lfs pull)";
  else if (/^\s*</.test(text)) hint = "; it looks like an HTML or XML page (an error page saved under the model's name?)";
  throw new GGUFError("NOT_GGUF", `not a GGUF file: it starts with bytes [${hex}], not "GGUF"${hint}`, {
    file,
    offset: 0,
  });
}

function checkVersion(view: DataView, file: string): 2 | 3 {
  const le = view.getUint32(4, true);
  if (le === 2 || le === 3) return le;
  const be = view.getUint32(4, false);
  if (be >= 1 && be <= 3) {
    throw new GGUFError("GGUF_BIG_ENDIAN", `big-endian GGUF (version ${be}) is not supported`, { file, offset: 4 });
  }
  const why = le === 1 ? "version 1 (32-bit counts) is obsolete: convert the model again" : "only versions 2 and 3 are read";
  throw new GGUFError("GGUF_UNSUPPORTED_VERSION", `GGUF version ${le}: ${why}`, { file, offset: 4, field: "version" });
}

/**
 * Rejects counts no file of this size could hold, before any parsing loop runs on them:
 * every key/value pair and tensor info takes at least a few bytes.
 */
function checkCounts(tensorCount: bigint, kvCount: bigint, size: number, file: string): void {
  if (tensorCount > BigInt(GGUF_MAX_TENSORS)) {
    throw new GGUFError("GGUF_BAD_COUNT", `tensor count ${tensorCount} exceeds the limit of ${GGUF_MAX_TENSORS}`, {
      file,
      offset: 8,
      field: "tensor_count",
    });
  }
  if (kvCount > BigInt(GGUF_MAX_KV)) {
    throw new GGUFError("GGUF_BAD_COUNT", `metadata count ${kvCount} exceeds the limit of ${GGUF_MAX_KV}`, {
      file,
      offset: 16,
      field: "kv_count",
    });
  }
  const minimum = FIXED_HEADER_BYTES + Number(kvCount) * MIN_KV_BYTES + Number(tensorCount) * MIN_TENSOR_INFO_BYTES;
  if (minimum > size) {
    throw new GGUFError(
      "GGUF_TRUNCATED",
      `${kvCount} metadata entries and ${tensorCount} tensor infos need at least ${minimum} bytes, ` +
        `the file has ${size}: the counts are corrupt or the file is cut short`,
      { file, offset: size },
    );
  }
}

/** What the library returns with `typedMetadata: true`, narrowed to what we use. */
type LibraryResult = Awaited<ReturnType<typeof parseTyped>>;

function parseTyped(uri: string, fetchFn: typeof fetch) {
  return gguf(uri, { fetch: fetchFn, typedMetadata: true });
}

/**
 * Runs `@huggingface/gguf` over `source`. It reads in 2 MB chunks and pads what lies
 * past the end with zeros; a correct header needs at most one such chunk past the end,
 * so a second one means the header runs off the file, and stops the parse there
 * (instead of letting a bogus length walk through megabytes of zeros).
 */
async function parseWithLibrary(
  source: ByteSource,
  firstChunk: Uint8Array,
  signal?: AbortSignal,
): Promise<LibraryResult> {
  const file = source.name;
  let chunksPastEnd = 0;
  let bytesServed = 0;
  let servedEnd = false;
  const serve = async (_input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const range = /^bytes=(\d+)-(\d+)$/.exec(new Headers(init?.headers).get("range") ?? "");
    if (!range?.[1] || !range[2]) throw new GGUFError("GGUF_INTERNAL", "the GGUF parser made a request without a range", { file });
    const start = Number(range[1]);
    const stop = Math.min(Number(range[2]) + 1, source.size);
    if (stop === source.size) servedEnd = true;
    if (start >= source.size) {
      if (++chunksPastEnd > 1) {
        throw new GGUFError("GGUF_TRUNCATED", `the header runs past the end of the file (${source.size} bytes)`, {
          file,
          offset: source.size,
        });
      }
      return new Response(null, { status: 206, headers: { "content-range": `bytes */${source.size}` } });
    }
    const bytes = stop <= firstChunk.byteLength ? firstChunk.subarray(start, stop) : await source.read(start, stop - start, signal);
    bytesServed += bytes.byteLength;
    return new Response(bytes.slice(), {
      status: 206,
      headers: { "content-range": `bytes ${start}-${stop - 1}/${source.size}` },
    });
  };
  try {
    // The URI only has to look like http(s) so that the library takes its fetch path.
    return await parseTyped(`https://gguf.invalid/${encodeURIComponent(file)}`, serve);
  } catch (err) {
    if (err instanceof LlmError) throw err;
    if (signal?.aborted) throw signal.reason;
    if (err instanceof RangeError && servedEnd) {
      // Its buffer held the whole file (and zeros past it): reading beyond it means a
      // length field sent the parse past the end of the file.
      throw new GGUFError("GGUF_TRUNCATED", `the header runs past the end of the file (${source.size} bytes)`, {
        file,
        offset: source.size,
      }, { cause: err });
    }
    const message = err instanceof Error ? err.message : String(err);
    if (message.includes("general.alignment")) {
      throw new GGUFError("GGUF_BAD_ALIGNMENT", message, { file, field: "general.alignment" }, { cause: err });
    }
    throw new GGUFError("GGUF_MALFORMED", `malformed header: ${message} (after reading ${bytesServed} bytes)`, { file }, {
      cause: err,
    });
  }
}

type TypedMetadata = LibraryResult["typedMetadata"];

/** Keys the library puts into its metadata object itself, not read from key/value pairs. */
const LIBRARY_KEYS = new Set(["version", "tensor_count", "kv_count"]);

function collectMetadata(typed: TypedMetadata, kvCount: number, file: string) {
  const metadata: Record<string, MetadataValue> = {};
  const metadataTypes: Record<string, MetadataTypeInfo> = {};
  for (const [key, entry] of Object.entries(typed)) {
    if (LIBRARY_KEYS.has(key) || entry === undefined) continue;
    Object.defineProperty(metadata, key, { value: entry.value, enumerable: true });
    const elementType = "subType" in entry ? entry.subType : undefined;
    const info: MetadataTypeInfo = elementType === undefined ? { type: entry.type } : { type: entry.type, elementType };
    Object.defineProperty(metadataTypes, key, { value: info, enumerable: true });
  }
  const found = Object.keys(metadata).length;
  if (found !== kvCount) {
    // The library keeps one value per key in an object: a repeated key (or one named like
    // its own fields, or "__proto__") leaves fewer entries than the header declares.
    throw new GGUFError(
      "GGUF_DUPLICATE_KEY",
      `the header declares ${kvCount} metadata entries but holds ${found} distinct keys (a key is repeated or reserved)`,
      { file, offset: 16 },
    );
  }
  return { metadata: Object.freeze(metadata), metadataTypes: Object.freeze(metadataTypes) };
}

function readAlignment(
  metadata: Metadata,
  types: Readonly<Record<string, MetadataTypeInfo>>,
  file: string,
): number {
  const key = "general.alignment";
  const v = metadata[key];
  if (v === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const isPowerOfTwo = typeof v === "number" && Number.isInteger(v) && v >= 1 && (v & (v - 1)) === 0;
  if (types[key]?.type !== GGUFValueType.UINT32 || !isPowerOfTwo) {
    throw new GGUFError("GGUF_BAD_ALIGNMENT", `must be a power of two stored as UINT32, found ${String(v)}`, {
      file,
      field: key,
    });
  }
  return v;
}

type LibraryTensor = LibraryResult["tensorInfos"][number];

interface TensorCheck {
  readonly file: string;
  readonly alignment: number;
  readonly dataOffset: number;
  readonly size: number;
}

function checkTensor(t: LibraryTensor, c: TensorCheck): Omit<GGUFTensorInfo, "shard"> {
  const bad = (message: string, offset?: number) =>
    new GGUFError("GGUF_BAD_TENSOR", `tensor "${t.name}": ${message}`, { file: c.file, field: t.name, offset });
  if (t.n_dims < 1 || t.n_dims > GGUF_MAX_DIMS) throw bad(`${t.n_dims} dimensions (1 to ${GGUF_MAX_DIMS} allowed)`);
  const shape = t.shape.map(Number);
  const nElements = shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(nElements)) throw bad(`shape [${shape.join(", ")}] has too many elements`);
  const type = knownType(t.dtype);
  const layout = type === undefined ? undefined : BLOCK_LAYOUTS.get(type);
  if (type === undefined || !layout) throw new UnsupportedTensorTypeError(t.name, ggmlTypeName(t.dtype), c.file);
  if ((shape[0] ?? 0) % layout.blockSize !== 0) {
    throw bad(`rows of ${shape[0]} values are not whole ${layout.name} blocks of ${layout.blockSize}`);
  }
  const byteLength = (nElements / layout.blockSize) * layout.typeSize;
  const relative = t.offset;
  if (relative > BigInt(Number.MAX_SAFE_INTEGER) || Number(relative) % c.alignment !== 0) {
    throw bad(`data offset ${relative} is not a multiple of the alignment ${c.alignment}`);
  }
  const offset = c.dataOffset + Number(relative);
  if (offset + byteLength > c.size) {
    throw new GGUFError(
      "GGUF_TRUNCATED",
      `tensor "${t.name}" needs bytes ${offset} to ${offset + byteLength}, the file has only ${c.size}`,
      { file: c.file, field: t.name, offset },
    );
  }
  return Object.freeze({ name: t.name, type, shape: Object.freeze(shape), nElements, byteLength, offset });
}

/** `n` as a `GGMLType` when the block table knows it. */
function knownType(n: number): GGMLType | undefined {
  for (const t of BLOCK_LAYOUTS.keys()) if (t === n) return t;
  return undefined;
}
