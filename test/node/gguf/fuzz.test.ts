/**
 * Fuzzing the reader: a small valid file mutated by a fixed-seed PRNG (bytes flipped,
 * truncations, length fields and counts inflated to huge values, u32 fields replaced).
 * Every case must end, quickly, either in a successful parse (with every tensor
 * readable) or in a typed LlmError with a message: never a plain Error, a hang, or a
 * giant allocation.
 */
import { describe, expect, it } from "vitest";
import { LlmError } from "../../../src/errors.ts";
import { GGMLType } from "../../../src/gguf/ggml-type.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { encodeGGUF, meta } from "../../../src/gguf/writer.ts";
import { everyMetadataType, prng, randomTensor } from "./fixtures.ts";

const SEED = 0x6775_6666; // "guff"
const CASES = 600;
const MAX_CASE_MS = 2000;

const rand = prng(SEED);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => {
  const x = xs[int(xs.length)];
  if (x === undefined) throw new Error("empty choice");
  return x;
};

const tensors = [
  randomTensor(rand, "token_embd.weight", GGMLType.Q8_0, [32, 4]),
  randomTensor(rand, "output_norm.weight", GGMLType.F32, [32]),
  randomTensor(rand, "blk.0.attn_q.weight", GGMLType.Q4_K, [256, 1]),
];
const keys = everyMetadataType();
const valid = encodeGGUF({
  metadata: [...keys, ["tokenizer.ggml.tokens", meta.strs(["<s>", "</s>", "a", "b"])]],
  tensors,
  alignment: 64,
});

function find(needle: string): number {
  const n = new TextEncoder().encode(needle);
  outer: for (let i = 0; i + n.length <= valid.length; i++) {
    for (let j = 0; j < n.length; j++) if (valid[i + j] !== n[j]) continue outer;
    return i;
  }
  throw new Error(`"${needle}" not in the file`);
}

// Where the interesting fields are, found from the names they precede or follow.
const names = [...keys.map(([k]) => k), "tokenizer.ggml.tokens", "general.alignment", ...tensors.map((t) => t.name)];
const stringLengthFields = names.map((k) => find(k) - 8);
const arrayKeys = [...keys.filter(([, e]) => e.elementType !== undefined).map(([k]) => k), "tokenizer.ggml.tokens"];
const arrayLengthFields = arrayKeys.map((k) => find(k) + k.length + 4 + 4);
const tensorFields = tensors.flatMap((t) => {
  const at = find(t.name) + t.name.length;
  const dimsEnd = at + 4 + 8 * t.shape.length;
  return [
    { at, width: 4 }, // n_dims
    ...t.shape.map((_, d) => ({ at: at + 4 + 8 * d, width: 8 })), // ne[d]
    { at: dimsEnd, width: 4 }, // type
    { at: dimsEnd + 4, width: 8 }, // offset
  ];
});
const headerEnd = Math.max(...tensorFields.map((f) => f.at + f.width));

const HUGE = [2n ** 60n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 32n, 2n ** 32n + 1n, 999_999n, 10_000_001n, BigInt(valid.length), 0n];

/** Each mutation leaves fields that a previous truncation cut off alone. */
type Mutation = (b: Uint8Array<ArrayBuffer>) => Uint8Array<ArrayBuffer>;

const mutations: Record<string, Mutation> = {
  flip(b) {
    const out = b.slice();
    const n = 1 + int(8);
    // Mostly in the header, where parsing happens; sometimes anywhere.
    for (let i = 0; i < n; i++) out[rand() < 0.85 ? int(headerEnd) : int(out.length)] = int(256);
    return out;
  },
  truncate(b) {
    return b.slice(0, rand() < 0.7 ? int(headerEnd + 1) : int(b.length));
  },
  inflateLength(b) {
    const out = b.slice();
    const at = pick(rand() < 0.6 ? stringLengthFields : arrayLengthFields);
    if (at + 8 <= out.length) new DataView(out.buffer).setBigUint64(at, pick(HUGE), true);
    return out;
  },
  inflateCount(b) {
    const out = b.slice();
    const view = new DataView(out.buffer);
    const at = pick([8, 16]);
    if (at + 8 > out.length) return out;
    const value = rand() < 0.5 ? pick(HUGE) : view.getBigUint64(at, true) + BigInt(1 + int(64));
    view.setBigUint64(at, value, true);
    return out;
  },
  tensorField(b) {
    const out = b.slice();
    const view = new DataView(out.buffer);
    const f = pick(tensorFields);
    if (f.at + f.width > out.length) return out;
    if (f.width === 4) view.setUint32(f.at, rand() < 0.5 ? int(40) : int(2 ** 32), true);
    else view.setBigUint64(f.at, rand() < 0.5 ? BigInt(int(4096)) : pick(HUGE), true);
    return out;
  },
  valueType(b) {
    // The u32 type of a metadata value, right after its key.
    const out = b.slice();
    const [key] = pick(keys);
    const at = find(key) + key.length;
    if (at + 4 <= out.length) new DataView(out.buffer).setUint32(at, rand() < 0.8 ? int(14) : int(2 ** 32), true);
    return out;
  },
};

describe("GGUF reader fuzz", () => {
  it(`${CASES} mutated files: each parses or throws a typed error, within ${MAX_CASE_MS} ms`, async () => {
    let parsed = 0;
    let typed = 0;
    const codes = new Map<string, number>();
    const kinds = Object.keys(mutations);
    for (let i = 0; i < CASES; i++) {
      const chosen = rand() < 0.2 ? [pick(kinds), pick(kinds)] : [pick(kinds)];
      let bytes = valid;
      for (const kind of chosen) bytes = mutations[kind]?.(bytes) ?? bytes;
      const input = i % 2 === 0 ? bytes : new Blob([bytes]);
      const started = performance.now();
      try {
        const file = await openGGUF(input);
        for (const t of file.tensors) expect((await file.readTensor(t)).byteLength).toBe(t.byteLength);
        await file.close();
        parsed++;
      } catch (err) {
        if (!(err instanceof LlmError)) {
          throw new Error(`case ${i} (${chosen.join("+")}) threw an untyped ${String(err)}`, { cause: err });
        }
        expect(err.message.length, `case ${i}`).toBeGreaterThan(0);
        typed++;
        codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
      }
      const ms = performance.now() - started;
      expect(ms, `case ${i} (${chosen.join("+")}) took ${ms.toFixed(0)} ms`).toBeLessThan(MAX_CASE_MS);
    }
    const histogram = [...codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(", ");
    console.log(`fuzz: ${CASES} cases, ${parsed} parsed, ${typed} typed errors (${histogram})`);
    expect(parsed + typed).toBe(CASES);
    // The mutations reach both outcomes and many distinct checks.
    expect(parsed).toBeGreaterThan(0);
    expect(codes.size).toBeGreaterThanOrEqual(5);
  });
});
