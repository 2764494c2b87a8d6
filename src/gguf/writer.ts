/**
 * Writes GGUF files (version 3 by default, 2 on request) that llama.cpp loads: in memory
 * with {@link encodeGGUF}, or streamed to disk one tensor at a time, optionally split into
 * shards named and tagged like llama.cpp's `gguf-split`, with {@link writeGGUFFile}.
 *
 * Metadata values carry their GGUF type explicitly (`meta.u32(4)`, not a bare `4`), since
 * llama.cpp checks types: `general.alignment` must be UINT32, `split.count` UINT16, ...
 */
import { InvalidArgumentError, LlmError, SourceError } from "../errors.ts";
import { BLOCK_LAYOUTS, type GGMLType, ggmlTypeName } from "./ggml-type.ts";
import { GGUFValueType, type MetadataValue } from "./metadata.ts";
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAX_DIMS, shardPath } from "./reader.ts";

/** One metadata value with its GGUF type; `elementType` for arrays (nested arrays are not written). */
export interface MetaEntry {
  readonly type: GGUFValueType;
  readonly elementType?: GGUFValueType;
  readonly value: MetadataValue;
}

const T = GGUFValueType;
const array = (elementType: GGUFValueType, values: readonly MetadataValue[]): MetaEntry => ({
  type: T.ARRAY,
  elementType,
  value: values,
});

/** Typed metadata constructors: `meta.u32(4)`, `meta.strs(["a", "b"])`, ... */
export const meta = {
  u8: (n: number): MetaEntry => ({ type: T.UINT8, value: n }),
  i8: (n: number): MetaEntry => ({ type: T.INT8, value: n }),
  u16: (n: number): MetaEntry => ({ type: T.UINT16, value: n }),
  i16: (n: number): MetaEntry => ({ type: T.INT16, value: n }),
  u32: (n: number): MetaEntry => ({ type: T.UINT32, value: n }),
  i32: (n: number): MetaEntry => ({ type: T.INT32, value: n }),
  u64: (n: number | bigint): MetaEntry => ({ type: T.UINT64, value: n }),
  i64: (n: number | bigint): MetaEntry => ({ type: T.INT64, value: n }),
  f32: (x: number): MetaEntry => ({ type: T.FLOAT32, value: x }),
  f64: (x: number): MetaEntry => ({ type: T.FLOAT64, value: x }),
  bool: (b: boolean): MetaEntry => ({ type: T.BOOL, value: b }),
  str: (s: string): MetaEntry => ({ type: T.STRING, value: s }),
  /** An array of any non-array element type. */
  array,
  strs: (values: readonly string[]): MetaEntry => array(T.STRING, values),
  u8s: (values: readonly number[]): MetaEntry => array(T.UINT8, values),
  i32s: (values: readonly number[]): MetaEntry => array(T.INT32, values),
  u32s: (values: readonly number[]): MetaEntry => array(T.UINT32, values),
  f32s: (values: readonly number[]): MetaEntry => array(T.FLOAT32, values),
  bools: (values: readonly boolean[]): MetaEntry => array(T.BOOL, values),
} as const;

/** Tensor bytes, or a function producing them when written (so huge files can stream). */
export type TensorData = Uint8Array | (() => Uint8Array | Promise<Uint8Array>);

/** One tensor to write. */
export interface TensorSpec {
  readonly name: string;
  readonly type: GGMLType;
  /** `ne`, innermost dimension first. */
  readonly shape: readonly number[];
  /** Exactly `tensorByteLength(type, product(shape))` bytes in the type's block layout. */
  readonly data: TensorData;
}

/** What to write. */
export interface GGUFSpec {
  readonly metadata: ReadonlyArray<readonly [string, MetaEntry]> | Readonly<Record<string, MetaEntry>>;
  readonly tensors: readonly TensorSpec[];
  /** Power of two; default 32. Written as `general.alignment` when not 32. */
  readonly alignment?: number;
  readonly version?: 2 | 3;
}

/** Options of {@link writeGGUFFile}. */
export interface WriteGGUFOptions {
  /**
   * Number of shards. Above 1, `path` (minus `.gguf`) becomes the prefix of
   * `-00001-of-0000N.gguf` files; tensors are spread in order, as evenly as counts allow.
   */
  readonly split?: number;
}

/** A tensor with its checked size, data not yet produced. */
interface PlannedTensor {
  readonly spec: TensorSpec;
  readonly byteLength: number;
}

/** Longest tensor name llama.cpp accepts, in UTF-8 bytes (`GGML_MAX_NAME` − 1). */
const MAX_NAME_BYTES = 63;
const utf8 = new TextEncoder();

/** Encodes a whole GGUF file in memory. Lazy tensor data must be synchronous here. */
export function encodeGGUF(spec: GGUFSpec): Uint8Array<ArrayBuffer> {
  const { entries, tensors, alignment, version } = plan(spec);
  const header = encodeHeader(entries, tensors, alignment, version);
  const total = header.byteLength + tensors.reduce((sum, t) => sum + alignUp(t.byteLength, alignment), 0);
  const out = new Uint8Array(total);
  out.set(header);
  let at = header.byteLength;
  for (const t of tensors) {
    const data = t.spec.data;
    const bytes = typeof data === "function" ? data() : data;
    if (bytes instanceof Promise) {
      throw new InvalidArgumentError(`tensor "${t.spec.name}"`, "data is asynchronous; use writeGGUFFile for lazy async data");
    }
    checkDataLength(t, bytes);
    out.set(bytes, at);
    at += alignUp(t.byteLength, alignment);
  }
  return out;
}

/**
 * Writes `spec` to `path`, one tensor in memory at a time. With `split > 1`, writes
 * `split` shards carrying `split.no`, `split.count` and `split.tensors.count`; the first
 * holds all metadata. Resolves to the paths written.
 */
export async function writeGGUFFile(path: string, spec: GGUFSpec, options: WriteGGUFOptions = {}): Promise<string[]> {
  const { entries, tensors, alignment, version } = plan(spec);
  const count = options.split ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > Math.max(1, tensors.length) || count > 99_999) {
    throw new InvalidArgumentError("split", `${count} shards for ${tensors.length} tensors (each shard needs one)`);
  }
  if (count === 1) {
    await writeShard(path, entries, tensors, alignment, version);
    return [path];
  }
  for (const [key] of entries) {
    if (key.startsWith("split.")) throw new InvalidArgumentError(`metadata "${key}"`, "split.* keys are written by the splitter");
  }
  const prefix = path.replace(/\.gguf$/i, "");
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const part = tensors.slice(Math.floor((i * tensors.length) / count), Math.floor(((i + 1) * tensors.length) / count));
    // llama.cpp's loader reads these three keys with exactly these types.
    const splitKeys: [string, MetaEntry][] = [
      ["split.no", meta.u16(i)],
      ["split.count", meta.u16(count)],
      ["split.tensors.count", meta.i32(tensors.length)],
    ];
    const own = i === 0 ? entries : entries.filter(([key]) => key === "general.alignment");
    const shardPathName = shardPath(prefix, i, count);
    await writeShard(shardPathName, [...own, ...splitKeys], part, alignment, version);
    paths.push(shardPathName);
  }
  return paths;
}

async function writeShard(
  path: string,
  entries: readonly (readonly [string, MetaEntry])[],
  tensors: readonly PlannedTensor[],
  alignment: number,
  version: 2 | 3,
): Promise<void> {
  const fs = await import("node:fs/promises");
  const ioError = (err: unknown) =>
    err instanceof LlmError
      ? err
      : new SourceError("IO_ERROR", path, `cannot write: ${err instanceof Error ? err.message : String(err)}`, undefined, {
          cause: err,
        });
  let handle: Awaited<ReturnType<typeof fs.open>>;
  try {
    handle = await fs.open(path, "w");
  } catch (err) {
    throw ioError(err);
  }
  // Errors of the caller's lazy data pass through as they are; only I/O is wrapped.
  let producing = false;
  try {
    await handle.write(encodeHeader(entries, tensors, alignment, version));
    for (const t of tensors) {
      const data = t.spec.data;
      producing = true;
      const bytes = typeof data === "function" ? await data() : data;
      producing = false;
      checkDataLength(t, bytes);
      await handle.write(bytes);
      const pad = alignUp(t.byteLength, alignment) - t.byteLength;
      if (pad > 0) await handle.write(new Uint8Array(pad));
    }
    await handle.close();
  } catch (err) {
    // Leave no half-written model under a name that looks complete.
    await handle.close().catch(() => undefined);
    await fs.rm(path, { force: true }).catch(() => undefined);
    throw producing ? err : ioError(err);
  }
}

/** Checks the whole spec before a byte is written; adds `general.alignment` when needed. */
function plan(spec: GGUFSpec) {
  const version = spec.version ?? 3;
  if (version !== 2 && version !== 3) throw new InvalidArgumentError("version", `${String(version)}: only 2 and 3 are written`);
  const alignment = spec.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment < 1 || alignment > 2 ** 30 || (alignment & (alignment - 1)) !== 0) {
    throw new InvalidArgumentError("alignment", `${alignment} is not a power of two between 1 and 2^30`);
  }
  const given: (readonly [string, MetaEntry])[] = Array.isArray(spec.metadata)
    ? [...spec.metadata]
    : Object.entries(spec.metadata);
  const seen = new Set<string>();
  for (const [key, entry] of given) {
    if (seen.has(key)) throw new InvalidArgumentError(`metadata "${key}"`, "key given twice");
    seen.add(key);
    if (key === "general.alignment") throw new InvalidArgumentError(`metadata "${key}"`, "set spec.alignment instead");
    checkEntry(key, entry);
  }
  const entries = alignment === GGUF_DEFAULT_ALIGNMENT ? given : [...given, ["general.alignment", meta.u32(alignment)] as const];
  const names = new Set<string>();
  const tensors = spec.tensors.map((t): PlannedTensor => {
    if (names.has(t.name)) throw new InvalidArgumentError(`tensor "${t.name}"`, "name given twice");
    names.add(t.name);
    return { spec: t, byteLength: checkTensor(t) };
  });
  return { entries, tensors, alignment, version };
}

function checkTensor(t: TensorSpec): number {
  const bad = (message: string) => new InvalidArgumentError(`tensor "${t.name}"`, message);
  const nameBytes = utf8.encode(t.name).byteLength;
  if (nameBytes === 0 || nameBytes > MAX_NAME_BYTES) throw bad(`name must be 1 to ${MAX_NAME_BYTES} UTF-8 bytes`);
  const layout = BLOCK_LAYOUTS.get(t.type);
  if (!layout) throw bad(`type ${ggmlTypeName(t.type)} has no known block layout`);
  if (t.shape.length < 1 || t.shape.length > GGUF_MAX_DIMS) throw bad(`shape needs 1 to ${GGUF_MAX_DIMS} dimensions`);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 1)) throw bad(`shape [${t.shape.join(", ")}] must be positive integers`);
  const first = t.shape[0] ?? 0;
  if (first % layout.blockSize !== 0) throw bad(`rows of ${first} values are not whole ${layout.name} blocks of ${layout.blockSize}`);
  const nElements = t.shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(nElements)) throw bad(`shape [${t.shape.join(", ")}] has too many elements`);
  const data = t.data;
  const byteLength = (nElements / layout.blockSize) * layout.typeSize;
  if (data instanceof Uint8Array) checkDataLength({ spec: t, byteLength }, data);
  return byteLength;
}

function checkDataLength(t: PlannedTensor, bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength !== t.byteLength) {
    const got = bytes instanceof Uint8Array ? `${bytes.byteLength} bytes` : typeof bytes;
    const layout = BLOCK_LAYOUTS.get(t.spec.type)?.name ?? "?";
    throw new InvalidArgumentError(
      `tensor "${t.spec.name}"`,
      `data is ${got}; ${layout} [${t.spec.shape.join(", ")}] takes ${t.byteLength} bytes`,
    );
  }
}

const INT_RANGES: ReadonlyMap<GGUFValueType, readonly [bigint, bigint]> = new Map([
  [T.UINT8, [0n, 0xffn]],
  [T.INT8, [-0x80n, 0x7fn]],
  [T.UINT16, [0n, 0xffffn]],
  [T.INT16, [-0x8000n, 0x7fffn]],
  [T.UINT32, [0n, 0xffff_ffffn]],
  [T.INT32, [-0x8000_0000n, 0x7fff_ffffn]],
  [T.UINT64, [0n, 0xffff_ffff_ffff_ffffn]],
  [T.INT64, [-0x8000_0000_0000_0000n, 0x7fff_ffff_ffff_ffffn]],
]);

function checkEntry(key: string, entry: MetaEntry): void {
  const where = `metadata "${key}"`;
  if (entry.type === T.ARRAY) {
    const elementType = entry.elementType;
    if (elementType === undefined || elementType === T.ARRAY || T[elementType] === undefined) {
      throw new InvalidArgumentError(where, `array element type ${String(elementType)} is not a scalar GGUF type`);
    }
    if (!Array.isArray(entry.value)) throw new InvalidArgumentError(where, "ARRAY value must be an array");
    entry.value.forEach((v: MetadataValue, i: number) => checkScalar(`${where}[${i}]`, elementType, v));
    return;
  }
  checkScalar(where, entry.type, entry.value);
}

function checkScalar(where: string, type: GGUFValueType, value: MetadataValue): void {
  const fail = (expected: string) =>
    new InvalidArgumentError(where, `${T[type] ?? `type ${type}`} needs ${expected}, got ${String(value)}`);
  const range = INT_RANGES.get(type);
  if (range) {
    const is64 = type === T.UINT64 || type === T.INT64;
    let big: bigint;
    if (typeof value === "bigint" && is64) big = value;
    else if (typeof value === "number" && Number.isSafeInteger(value)) big = BigInt(value);
    else throw fail(is64 ? "an integer (number or bigint)" : "an integer");
    if (big < range[0] || big > range[1]) throw fail(`a value in [${range[0]}, ${range[1]}]`);
    return;
  }
  switch (type) {
    case T.FLOAT32:
    case T.FLOAT64:
      if (typeof value !== "number") throw fail("a number");
      return;
    case T.BOOL:
      if (typeof value !== "boolean") throw fail("a boolean");
      return;
    case T.STRING:
      if (typeof value !== "string") throw fail("a string");
      return;
    default:
      throw fail("a known scalar type");
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** A growing little-endian byte buffer. */
class ByteWriter {
  #buf = new Uint8Array(4096);
  #view = new DataView(this.#buf.buffer);
  length = 0;

  #reserve(n: number): number {
    const at = this.length;
    if (at + n > this.#buf.byteLength) {
      const next = new Uint8Array(Math.max(this.#buf.byteLength * 2, at + n));
      next.set(this.#buf.subarray(0, at));
      this.#buf = next;
      this.#view = new DataView(next.buffer);
    }
    this.length += n;
    return at;
  }

  u8(n: number): void {
    const [view, at] = this.#at(1);
    view.setUint8(at, n);
  }
  u32(n: number): void {
    const [view, at] = this.#at(4);
    view.setUint32(at, n, true);
  }
  u64(n: number | bigint): void {
    const [view, at] = this.#at(8);
    view.setBigUint64(at, BigInt.asUintN(64, BigInt(n)), true);
  }
  bytes(b: Uint8Array): void {
    const at = this.#reserve(b.byteLength);
    this.#buf.set(b, at);
  }
  str(s: string): void {
    const b = utf8.encode(s);
    this.u64(b.byteLength);
    this.bytes(b);
  }
  padTo(alignment: number): void {
    this.#reserve(alignUp(this.length, alignment) - this.length);
  }
  /** Reserves `n` bytes and returns the view and offset to write them at (after any growth). */
  #at(n: number): [DataView, number] {
    const at = this.#reserve(n);
    return [this.#view, at];
  }

  scalar(type: GGUFValueType, v: MetadataValue): void {
    switch (type) {
      case T.UINT8:
      case T.INT8: {
        const [view, at] = this.#at(1);
        return view.setUint8(at, Number(v) & 0xff);
      }
      case T.UINT16:
      case T.INT16: {
        const [view, at] = this.#at(2);
        return view.setUint16(at, Number(v) & 0xffff, true);
      }
      case T.UINT32:
      case T.INT32: {
        const [view, at] = this.#at(4);
        return view.setUint32(at, Number(v) >>> 0, true);
      }
      case T.UINT64:
      case T.INT64:
        return this.u64(typeof v === "bigint" ? v : Number(v));
      case T.FLOAT32: {
        const [view, at] = this.#at(4);
        return view.setFloat32(at, Number(v), true);
      }
      case T.FLOAT64: {
        const [view, at] = this.#at(8);
        return view.setFloat64(at, Number(v), true);
      }
      case T.BOOL:
        return this.u8(v === true ? 1 : 0);
      case T.STRING:
        return this.str(String(v));
      default:
        throw new InvalidArgumentError("metadata", `cannot encode type ${type}`);
    }
  }
  result(): Uint8Array<ArrayBuffer> {
    return this.#buf.slice(0, this.length);
  }
}

function encodeHeader(
  entries: readonly (readonly [string, MetaEntry])[],
  tensors: readonly PlannedTensor[],
  alignment: number,
  version: 2 | 3,
): Uint8Array<ArrayBuffer> {
  const w = new ByteWriter();
  w.bytes(utf8.encode("GGUF"));
  w.u32(version);
  w.u64(tensors.length);
  w.u64(entries.length);
  for (const [key, entry] of entries) {
    w.str(key);
    w.u32(entry.type);
    if (entry.type === T.ARRAY && Array.isArray(entry.value) && entry.elementType !== undefined) {
      w.u32(entry.elementType);
      w.u64(entry.value.length);
      for (const v of entry.value) w.scalar(entry.elementType, v);
    } else {
      w.scalar(entry.type, entry.value);
    }
  }
  let offset = 0;
  for (const t of tensors) {
    w.str(t.spec.name);
    w.u32(t.spec.shape.length);
    for (const d of t.spec.shape) w.u64(d);
    w.u32(t.spec.type);
    w.u64(offset);
    offset += alignUp(t.byteLength, alignment);
  }
  w.padTo(alignment);
  return w.result();
}
