/**
 * Writer → reader round trips (every metadata type, several tensor types, v2 and v3,
 * alignments 32/64/1024), a byte-exact hand-encoded file, node-llama-cpp's independent
 * GGUF parser reading what we wrote, and the typed errors of malformed headers.
 */
import { access, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GGUFError, InvalidArgumentError, UnsupportedTensorTypeError } from "../../../src/errors.ts";
import { GGMLType } from "../../../src/gguf/ggml-type.ts";
import { GGUFValueType, type MetadataValue } from "../../../src/gguf/metadata.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { type ByteSource, memorySource } from "../../../src/gguf/source.ts";
import { encodeGGUF, type GGUFSpec, meta, type TensorSpec, writeGGUFFile } from "../../../src/gguf/writer.ts";
import { everyMetadataType, prng, randomTensor } from "./fixtures.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gguf-roundtrip-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sampleTensors(seed: number): TensorSpec[] {
  const r = prng(seed);
  return [
    randomTensor(r, "f32.matrix", GGMLType.F32, [8, 3]),
    randomTensor(r, "f16.vector", GGMLType.F16, [17]),
    randomTensor(r, "bf16.matrix", GGMLType.BF16, [4, 4]),
    randomTensor(r, "q4_0.matrix", GGMLType.Q4_0, [64, 2]),
    randomTensor(r, "q5_1.3d", GGMLType.Q5_1, [32, 1, 2]),
    randomTensor(r, "q8_0.vector", GGMLType.Q8_0, [32]),
    randomTensor(r, "q4_k.matrix", GGMLType.Q4_K, [256, 2]),
    randomTensor(r, "q6_k.4d", GGMLType.Q6_K, [256, 1, 1, 2]),
  ];
}

function bytesOf(t: TensorSpec): Uint8Array {
  if (!(t.data instanceof Uint8Array)) throw new Error("test tensors hold bytes");
  return t.data;
}

/** What the reader should return for a written value: 64-bit integers come back as bigint. */
function expectedValue(type: GGUFValueType, value: MetadataValue): MetadataValue {
  const wide = type === GGUFValueType.UINT64 || type === GGUFValueType.INT64;
  if (wide && (typeof value === "number" || typeof value === "bigint")) return BigInt(value);
  return value;
}

describe("round trip", () => {
  for (const version of [2, 3] as const) {
    for (const alignment of [32, 64, 1024]) {
      it(`v${version}, alignment ${alignment}: metadata, types, shapes and bytes survive`, async () => {
        const metadata = everyMetadataType();
        const tensors = sampleTensors(version * 1000 + alignment);
        const bytes = encodeGGUF({ metadata, tensors, version, alignment });
        const file = await openGGUF(bytes);
        expect(file.version).toBe(version);
        expect(file.alignment).toBe(alignment);
        // Every key once; general.alignment only when not the default.
        const extra = alignment === 32 ? [] : ["general.alignment"];
        expect(Object.keys(file.metadata).sort()).toEqual([...metadata.map(([k]) => k), ...extra].sort());
        for (const [key, entry] of metadata) {
          expect(file.metadataTypes[key]).toEqual(
            entry.elementType === undefined ? { type: entry.type } : { type: entry.type, elementType: entry.elementType },
          );
          const want = Array.isArray(entry.value)
            ? entry.value.map((v) => expectedValue(entry.elementType ?? GGUFValueType.ARRAY, v))
            : expectedValue(entry.type, entry.value);
          expect(file.metadata[key], key).toEqual(want);
        }
        if (alignment !== 32) {
          expect(file.metadata["general.alignment"]).toBe(alignment);
          expect(file.metadataTypes["general.alignment"]).toEqual({ type: GGUFValueType.UINT32 });
        }
        expect(file.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
        let previousEnd = 0;
        for (const spec of tensors) {
          const info = file.tensor(spec.name);
          if (!info) throw new Error(`missing ${spec.name}`);
          expect(info.type).toBe(spec.type);
          expect(info.shape).toEqual(spec.shape);
          expect(info.nElements).toBe(spec.shape.reduce((a, b) => a * b, 1));
          expect(info.byteLength).toBe(bytesOf(spec).byteLength);
          expect(info.offset % alignment).toBe(0);
          expect(info.offset).toBeGreaterThanOrEqual(previousEnd);
          previousEnd = info.offset + info.byteLength;
          expect(await file.readTensor(info)).toEqual(bytesOf(spec));
        }
        // The last tensor is padded too, as llama.cpp writes it.
        expect(file.fileSize).toBe(Math.ceil(previousEnd / alignment) * alignment);
        await file.close();
      });
    }
  }

  it("encodes a minimal file byte for byte as the GGUF spec lays it out", () => {
    const bytes = encodeGGUF({ metadata: [["a", meta.u8(7)]], tensors: [] });
    // magic, version 3, 0 tensors, 1 key; key "a" (u64 length 1), type UINT8 (0), value 7;
    // 4+4+8+8+8+1+4+1 = 38 bytes of header, padded to 64 (alignment 32).
    const expected = new Uint8Array(64);
    expected.set([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0], 0);
    expected.set([0, 0, 0, 0, 0, 0, 0, 0], 8);
    expected.set([1, 0, 0, 0, 0, 0, 0, 0], 16);
    expected.set([1, 0, 0, 0, 0, 0, 0, 0, 0x61], 24);
    expected.set([0, 0, 0, 0, 7], 33);
    expect(bytes).toEqual(expected);
  });

  it("node-llama-cpp's own GGUF parser reads our file with the same values and offsets", async () => {
    const metadata = everyMetadataType();
    const tensors = sampleTensors(7);
    const path = join(dir, "independent.gguf");
    await writeGGUFFile(path, { metadata, tensors, alignment: 64 });
    const info = await readGgufFileInfo(path, { logWarnings: false });
    const ours = await openGGUF(path);
    expect(info.version).toBe(3);
    const theirs: unknown = info.metadata;
    const lookup = (key: string): unknown =>
      key.split(".").reduce<unknown>((node, part) => (typeof node === "object" && node !== null ? Reflect.get(node, part) : undefined), theirs);
    // Compare as strings so 64-bit values compare whatever number type each parser picks.
    const norm = (v: unknown): unknown => (Array.isArray(v) ? v.map(norm) : typeof v === "bigint" || typeof v === "number" ? String(v) : v);
    for (const [key] of metadata) {
      if (key === "t.u64" || key === "t.i64" || key === "t.u64s" || key === "t.i64s") continue; // it reads 64-bit as number: lossy
      expect(norm(lookup(key)), key).toEqual(norm(ours.metadata[key]));
    }
    expect(norm(lookup("general.alignment"))).toBe("64");
    const theirTensors = info.fullTensorInfo ?? [];
    expect(theirTensors.map((t) => t.name)).toEqual(ours.tensors.map((t) => t.name));
    theirTensors.forEach((t, i) => {
      const mine = ours.tensors[i];
      expect(Number(t.fileOffset)).toBe(mine?.offset);
      expect(t.dimensions.map(Number)).toEqual(mine?.shape);
      expect(Number(t.ggmlType)).toBe(mine?.type);
    });
    await ours.close();
  });

  it("streams lazy tensor data (sync and async) in order, only while writing", async () => {
    const calls: string[] = [];
    const r = prng(3);
    const eager = sampleTensors(3).slice(0, 3);
    const lazy: TensorSpec[] = eager.map((t, i) => ({
      ...t,
      data: i % 2 === 0 ? () => (calls.push(t.name), bytesOf(t)) : async () => (calls.push(t.name), bytesOf(t)),
    }));
    const spec: GGUFSpec = { metadata: { x: meta.str(String(r())) }, tensors: lazy };
    expect(calls).toEqual([]);
    const path = join(dir, "lazy.gguf");
    await writeGGUFFile(path, spec);
    expect(calls).toEqual(eager.map((t) => t.name));
    const file = await openGGUF(path);
    for (const t of eager) expect(await file.readTensor(t.name)).toEqual(bytesOf(t));
    await file.close();
    expect(() => encodeGGUF(spec)).toThrow(InvalidArgumentError);
  });
});

describe("writer refuses bad specs", () => {
  const t = sampleTensors(1)[0] as TensorSpec;
  const cases: Array<[string, GGUFSpec]> = [
    ["alignment 0", { metadata: {}, tensors: [t], alignment: 0 }],
    ["alignment 3", { metadata: {}, tensors: [t], alignment: 3 }],
    ["alignment 48", { metadata: {}, tensors: [t], alignment: 48 }],
    ["alignment -32", { metadata: {}, tensors: [t], alignment: -32 }],
    ["alignment 1.5", { metadata: {}, tensors: [t], alignment: 1.5 }],
    ["general.alignment in metadata", { metadata: { "general.alignment": meta.u32(64) }, tensors: [] }],
    ["u8 out of range", { metadata: { k: meta.u8(256) }, tensors: [] }],
    ["i32 not whole", { metadata: { k: meta.i32(1.5) }, tensors: [] }],
    ["u64 negative", { metadata: { k: meta.u64(-1n) }, tensors: [] }],
    ["bigint for a u32", { metadata: { k: { type: GGUFValueType.UINT32, value: 1n } }, tensors: [] }],
    ["string array holding a number", { metadata: { k: meta.array(GGUFValueType.STRING, ["a", 1]) }, tensors: [] }],
    ["nested array", { metadata: { k: meta.array(GGUFValueType.ARRAY, [[1]]) }, tensors: [] }],
    ["repeated key", { metadata: [["k", meta.u8(1)], ["k", meta.u8(2)]], tensors: [] }],
    ["data too short", { metadata: {}, tensors: [{ ...t, data: bytesOf(t).subarray(1) }] }],
    ["rows not whole blocks", { metadata: {}, tensors: [{ name: "q", type: GGMLType.Q8_0, shape: [16, 2], data: new Uint8Array(34) }] }],
    ["five dimensions", { metadata: {}, tensors: [{ name: "x", type: GGMLType.F32, shape: [1, 1, 1, 1, 1], data: new Uint8Array(4) }] }],
    ["zero dimension", { metadata: {}, tensors: [{ name: "x", type: GGMLType.F32, shape: [4, 0], data: new Uint8Array(0) }] }],
    ["64-byte name", { metadata: {}, tensors: [{ ...t, name: "n".repeat(64) }] }],
    ["repeated tensor", { metadata: {}, tensors: [t, t] }],
    ["Q8_K has no layout here", { metadata: {}, tensors: [{ name: "x", type: GGMLType.Q8_K, shape: [256], data: new Uint8Array(292) }] }],
  ];
  for (const [what, spec] of cases) {
    it(what, () => {
      expect(() => encodeGGUF(spec)).toThrow(InvalidArgumentError);
    });
  }

  it("file errors are typed, and a failed write leaves no file behind", async () => {
    await expect(writeGGUFFile(join(dir, "no/such/dir.gguf"), { metadata: {}, tensors: [t] })).rejects.toMatchObject({
      code: "IO_ERROR",
    });
    const path = join(dir, "short.gguf");
    const short: TensorSpec = { ...t, data: () => bytesOf(t).subarray(2) };
    await expect(writeGGUFFile(path, { metadata: {}, tensors: [short] })).rejects.toThrow(InvalidArgumentError);
    const boom: TensorSpec = { ...t, data: () => Promise.reject(new RangeError("generator failed")) };
    await expect(writeGGUFFile(path, { metadata: {}, tensors: [boom] })).rejects.toThrow(RangeError);
    await expect(access(path)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("split into more shards than tensors", async () => {
    await expect(writeGGUFFile(join(dir, "s.gguf"), { metadata: {}, tensors: [t] }, { split: 2 })).rejects.toThrow(InvalidArgumentError);
  });
});

/** Offset just after the first occurrence of `needle` in `bytes`. */
function after(bytes: Uint8Array, needle: string): number {
  const n = new TextEncoder().encode(needle);
  for (let i = 0; i + n.length <= bytes.length; i++) {
    if (n.every((b, j) => bytes[i + j] === b)) return i + n.length;
  }
  throw new Error(`"${needle}" not found`);
}

async function openError(bytes: Uint8Array): Promise<GGUFError> {
  try {
    await openGGUF(bytes);
  } catch (err) {
    if (err instanceof GGUFError) return err;
    throw err;
  }
  throw new Error("opened without error");
}

describe("reader refuses malformed headers with typed errors", () => {
  const base = (): Uint8Array => encodeGGUF({ metadata: { "x.key": meta.u32(1) }, tensors: sampleTensors(9).slice(0, 2), alignment: 64 });

  it("a non-power-of-two general.alignment", async () => {
    const bytes = base();
    new DataView(bytes.buffer).setUint32(after(bytes, "general.alignment") + 4, 48, true);
    const err = await openError(bytes);
    expect(err.code).toBe("GGUF_BAD_ALIGNMENT");
    expect(err.field).toBe("general.alignment");
  });

  it("general.alignment stored as another type", async () => {
    const bytes = base();
    // Type INT32 instead of UINT32, same width, same value.
    new DataView(bytes.buffer).setUint32(after(bytes, "general.alignment"), GGUFValueType.INT32, true);
    expect((await openError(bytes)).code).toBe("GGUF_BAD_ALIGNMENT");
  });

  it("versions 1 and 4, and big-endian files", async () => {
    for (const [version, little, code] of [
      [1, true, "GGUF_UNSUPPORTED_VERSION"],
      [4, true, "GGUF_UNSUPPORTED_VERSION"],
      [3, false, "GGUF_BIG_ENDIAN"],
    ] as const) {
      const bytes = base();
      new DataView(bytes.buffer).setUint32(4, version, little);
      const err = await openError(bytes);
      expect(err.code).toBe(code);
      expect(err.offset).toBe(4);
    }
  });

  it("an unknown tensor type names the tensor", async () => {
    const bytes = base();
    // After the name: n_dims (u32), 2 dims (u64 each), then the type.
    const at = after(bytes, "f16.vector") + 4 + 8;
    expect(new DataView(bytes.buffer).getUint32(at, true)).toBe(GGMLType.F16);
    new DataView(bytes.buffer).setUint32(at, 99, true);
    const err = await openError(bytes);
    expect(err).toBeInstanceOf(UnsupportedTensorTypeError);
    expect(err.field).toBe("f16.vector");
    expect(err.message).toContain("type#99");
  });

  it("a truncated data section names the tensor and its offset", async () => {
    const bytes = base();
    const file = await openGGUF(bytes);
    const last = file.tensors.at(-1);
    if (!last) throw new Error("no tensors");
    const err = await openError(bytes.subarray(0, last.offset + last.byteLength - 1));
    expect(err.code).toBe("GGUF_TRUNCATED");
    expect(err.field).toBe(last.name);
    expect(err.offset).toBe(last.offset);
  });

  it("a header cut short", async () => {
    const bytes = base();
    for (const cut of [0, 3, 10, 30, after(bytes, "x.key"), after(bytes, "f16.vector")]) {
      const err = await openError(bytes.subarray(0, cut));
      expect(["NOT_GGUF", "GGUF_TRUNCATED"]).toContain(err.code);
    }
  });

  it("a repeated tensor name and a repeated key", async () => {
    const t = sampleTensors(2);
    const bytes = encodeGGUF({ metadata: { aa: meta.u8(1), ab: meta.u8(2) }, tensors: [{ ...t[0]!, name: "x1" }, { ...t[1]!, name: "x2" }] });
    const dupTensor = bytes.slice();
    dupTensor[after(dupTensor, "x2") - 1] = "1".charCodeAt(0);
    expect((await openError(dupTensor)).code).toBe("GGUF_DUPLICATE_TENSOR");
    const dupKey = bytes.slice();
    dupKey[after(dupKey, "ab") - 1] = "a".charCodeAt(0);
    expect((await openError(dupKey)).code).toBe("GGUF_DUPLICATE_KEY");
  });

  it("counts larger than the file could hold, before any parsing loop", async () => {
    const bytes = base();
    for (const [at, value] of [[8, 2n ** 60n], [16, 2n ** 60n], [8, 999_999n], [16, 99_999n]] as const) {
      const b = bytes.slice();
      new DataView(b.buffer).setBigUint64(at, value, true);
      const err = await openError(b);
      expect(["GGUF_BAD_COUNT", "GGUF_TRUNCATED"]).toContain(err.code);
      expect(err.offset).toBeDefined();
    }
  });

  it("readTensor of an unknown name", async () => {
    const file = await openGGUF(base());
    await expect(file.readTensor("nope")).rejects.toMatchObject({ code: "TENSOR_MISSING" });
  });

  it("open reads only the header, never all tensor data", async () => {
    const big = encodeGGUF({
      metadata: {},
      tensors: [{ name: "big", type: GGMLType.F32, shape: [1024, 4096], data: new Uint8Array(16 * 1024 * 1024) }],
    });
    const inner = memorySource(big);
    let bytesRead = 0;
    const counting: ByteSource = {
      ...inner,
      read(offset, length, signal) {
        bytesRead += length;
        return inner.read(offset, length, signal);
      },
    };
    const file = await openGGUF(counting);
    // The parser reads one 2 MB chunk for a header of a few bytes, out of 16 MiB.
    expect(bytesRead).toBeLessThanOrEqual(2_000_000);
    expect(file.tensor("big")?.byteLength).toBe(16 * 1024 * 1024);
  });
});
