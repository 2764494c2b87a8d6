/**
 * IQ4_NL and IQ4_XS: hand-built blocks whose expected values are computed per element from
 * the format's definition (ggml-common.h: `kvalues_iq4nl`, block_iq4_nl, block_iq4_xs),
 * files holding them, and the other i-quants, which stay refused with the tensor and the
 * type named. (Bit-exactness against GGML's own code is in ggml-golden.test.ts, the CPU
 * forward pass against llama.cpp in ../reference/llamacpp-quant.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { UnsupportedTensorTypeError } from "../../../src/errors.ts";
import { GGMLType, QK_K, ggmlTypeName } from "../../../src/gguf/ggml-type.ts";
import { dequantize, quantize } from "../../../src/gguf/quant/index.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { encodeGGUF, meta } from "../../../src/gguf/writer.ts";
import { weightLike } from "./random.ts";

/** ggml-common.h's `kvalues_iq4nl`, copied from the header (not from our source). */
const K = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

function range(n: number, f: (i: number) => number): number[] {
  return Array.from({ length: n }, (_, i) => f(i));
}

/** Expected values, checked exactly (every product here is exact in f32). */
function expectValues(actual: Float32Array, expected: (i: number) => number): void {
  expect(Array.from(actual)).toEqual(Array.from(Float32Array.from(range(actual.length, expected))));
}

/** An IQ4_NL block: f16 bits of d, then byte j = nibble j | nibble (16 + j) << 4. */
function nlBlock(d: number, nibble: (i: number) => number): Uint8Array {
  return Uint8Array.from([d & 0xff, d >> 8, ...range(16, (j) => nibble(j) | (nibble(16 + j) << 4))]);
}

describe("IQ4_NL blocks", () => {
  it("d = 0.5, nibbles j and 15 − j give 0.5·K[j] and 0.5·K[15 − j]", () => {
    const x = dequantize(GGMLType.IQ4_NL, nlBlock(0x3800, (i) => (i < 16 ? i : 31 - i)), 32);
    expectValues(x, (i) => 0.5 * K[i < 16 ? i : 31 - i]);
    expect([x[0], x[8], x[15], x[16], x[31]]).toEqual([-63.5, 0.5, 56.5, 56.5, -63.5]);
  });

  it("a negative d mirrors the table; two blocks decode independently", () => {
    const data = new Uint8Array([...nlBlock(0xbc00, (i) => i % 16), ...nlBlock(0x2c00, () => 7)]);
    const x = dequantize(GGMLType.IQ4_NL, data, 64);
    expectValues(x, (i) => (i < 32 ? -K[i % 16] : 0.0625 * -10));
  });

  it("values on the grid of one scale quantize back to the hand-built bytes", () => {
    const data = nlBlock(0x3800, (i) => (i < 16 ? i : 31 - i));
    // The largest magnitude, 63.5, is on K[0] = −127, so the first guess is d = 0.5 and it fits exactly.
    expect(Array.from(quantize(GGMLType.IQ4_NL, dequantize(GGMLType.IQ4_NL, data, 32)))).toEqual(Array.from(data));
  });
});

describe("IQ4_XS super-blocks", () => {
  // Sub-block scales ls (6 bits, x = d·(ls − 32)·K[q]) and how they are packed by hand:
  // low nibbles in scales_l (sub-block s: byte s/2, high nibble for odd s), high 2 bits
  // at bits 2s of scales_h.
  const ls = [0, 63, 32, 33, 1, 47, 16, 48];
  // low nibbles 0 F 0 1 1 F 0 0 → bytes F0 10 F1 00
  const scalesL = [0xf0, 0x10, 0xf1, 0x00];
  // high bits 0 3 2 2 0 2 1 3 → 0b11_01_10_00_10_10_11_00 = 0xD8AC
  const scalesH = [0xac, 0xd8];
  const nibble = (s: number, j: number): number => (j < 16 ? (j + s) & 15 : 15 - (j - 16));
  const qs = range(8 * 16, (b) => {
    const s = Math.floor(b / 16);
    const j = b % 16;
    return nibble(s, j) | (nibble(s, j + 16) << 4);
  });

  it("d = 0.0625 with eight hand-packed sub-block scales", () => {
    const data = Uint8Array.from([0x00, 0x2c, ...scalesH, ...scalesL, ...qs]);
    expect(data.length).toBe(136);
    const x = dequantize(GGMLType.IQ4_XS, data, QK_K);
    expectValues(x, (i) => 0.0625 * (ls[Math.floor(i / 32)] - 32) * K[nibble(Math.floor(i / 32), i % 32)]);
    // Sub-block 0 has ls − 32 = −32: x[0] = 0.0625·−32·K[0] = 254.
    expect(x[0]).toBe(254);
    // Sub-block 2 has ls − 32 = 0.
    expect(x.subarray(64, 96).every((v) => v === 0)).toBe(true);
  });

  it("values on the grid quantize back to the same values", () => {
    // Every sub-block's scale a multiple of one d: the search finds the grid exactly.
    const data = Uint8Array.from([0x00, 0x2c, ...scalesH, ...scalesL, ...qs]);
    const x = dequantize(GGMLType.IQ4_XS, data, QK_K);
    // + 0 turns −0 into 0: the all-zero sub-block may come back with the other sign of zero.
    const y = dequantize(GGMLType.IQ4_XS, quantize(GGMLType.IQ4_XS, x), QK_K);
    expect(Array.from(y, (v) => v + 0)).toEqual(Array.from(x, (v) => v + 0));
  });
});

describe("IQ4 against the 4-bit formats of the same size", () => {
  it("IQ4_NL has less RMS error than Q4_0 (18 bytes per 32 values both), IQ4_XS than Q4_0", () => {
    const x = weightLike(32 * QK_K, 4321);
    const rms = (type: GGMLType): number => {
      const y = dequantize(type, quantize(type, x), x.length);
      let se = 0;
      let sx = 0;
      x.forEach((v, i) => {
        se += (v - y[i]) ** 2;
        sx += v * v;
      });
      return Math.sqrt(se / sx);
    };
    expect(rms(GGMLType.IQ4_NL)).toBeLessThan(rms(GGMLType.Q4_0));
    expect(rms(GGMLType.IQ4_XS)).toBeLessThan(rms(GGMLType.Q4_0));
  });
});

describe("files", () => {
  it("IQ4_NL and IQ4_XS tensors are written, read back and decoded", async () => {
    const values = weightLike(2 * QK_K, 99);
    const tensors = [GGMLType.IQ4_NL, GGMLType.IQ4_XS].map((type) => ({
      name: `${ggmlTypeName(type).toLowerCase()}.weight`,
      type,
      shape: [QK_K, 2],
      data: quantize(type, values),
    }));
    const file = await openGGUF(encodeGGUF({ metadata: { "x.key": meta.u32(1) }, tensors }));
    try {
      for (const t of tensors) {
        const info = file.tensors.find((i) => i.name === t.name);
        expect(info?.type).toBe(t.type);
        expect(info?.byteLength).toBe(t.type === GGMLType.IQ4_NL ? 16 * 18 : 2 * 136);
        const bytes = await file.readTensor(t.name);
        expect(Array.from(bytes)).toEqual(Array.from(t.data));
      }
    } finally {
      await file.close();
    }
  });

  const REFUSED = [
    [GGMLType.IQ2_XXS, "IQ2_XXS"],
    [GGMLType.IQ2_XS, "IQ2_XS"],
    [GGMLType.IQ3_XXS, "IQ3_XXS"],
    [GGMLType.IQ1_S, "IQ1_S"],
    [GGMLType.IQ3_S, "IQ3_S"],
    [GGMLType.IQ2_S, "IQ2_S"],
    [GGMLType.IQ1_M, "IQ1_M"],
  ] as const;

  it.each(REFUSED)("a file with a type-%i (%s) tensor is refused, naming the tensor and the type", async (type, name) => {
    // Written as IQ4_XS (256 values, 136 bytes), then its type number patched in the header.
    const tensor = { name: "blk.0.ffn_down.weight", type: GGMLType.IQ4_XS, shape: [QK_K], data: new Uint8Array(136) };
    const bytes = encodeGGUF({ metadata: { "x.key": meta.u32(1) }, tensors: [tensor] });
    // After the name: n_dims (u32), 1 dim (u64), then the type (u32).
    const at = indexAfter(bytes, tensor.name) + 4 + 8;
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(view.getUint32(at, true)).toBe(GGMLType.IQ4_XS);
    view.setUint32(at, type, true);
    const err = await openGGUF(bytes).then(
      () => expect.fail("opened"),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnsupportedTensorTypeError);
    const typed = err as UnsupportedTensorTypeError;
    expect(typed.code).toBe("UNSUPPORTED_TENSOR_TYPE");
    expect(typed.field).toBe(tensor.name);
    expect(typed.message).toContain(`tensor "${tensor.name}" has type ${name}, which this runtime cannot run`);
  });

  it.each(REFUSED)("dequantize refuses type %i (%s) naming the tensor", (type, name) => {
    expect(() => dequantize(type, new Uint8Array(0), 0, { tensor: "t.weight" })).toThrow(
      new UnsupportedTensorTypeError("t.weight", name),
    );
  });
});

function indexAfter(bytes: Uint8Array, needle: string): number {
  const n = new TextEncoder().encode(needle);
  for (let i = 0; i + n.length <= bytes.length; i++) {
    if (n.every((b, j) => bytes[i + j] === b)) return i + n.length;
  }
  throw new Error(`"${needle}" not found`);
}
