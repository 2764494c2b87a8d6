/**
 * Hand-built blocks of every format, with the expected values computed per element from
 * the format's definition (ggml-common.h), independently of the decoder's loop order.
 * Half constants used below: 0x3C00 = 1, 0x3800 = 0.5, 0x3400 = 0.25, 0x3000 = 0.125,
 * 0x2C00 = 0.0625, 0x4000 = 2, 0xBC00 = -1.
 */
import { describe, expect, it } from "vitest";
import { GGMLType } from "../../../src/gguf/ggml-type.ts";
import { dequantize, quantize } from "../../../src/gguf/quant/index.ts";

/** Bytes of a block from parts: numbers are bytes, `{ f16 }` a little-endian half. */
function block(...parts: (number | number[] | { f16: number })[]): Uint8Array {
  const bytes: number[] = [];
  for (const part of parts) {
    if (typeof part === "number") bytes.push(part);
    else if (Array.isArray(part)) bytes.push(...part);
    else bytes.push(part.f16 & 0xff, part.f16 >> 8);
  }
  return Uint8Array.from(bytes);
}

function range(n: number, f: (i: number) => number): number[] {
  return Array.from({ length: n }, (_, i) => f(i));
}

/** Expected values, checked exactly (every product here is exact in f32). */
function expectValues(actual: Float32Array, expected: (i: number) => number): void {
  const want = Float32Array.from(range(actual.length, expected));
  expect(Array.from(actual)).toEqual(Array.from(want));
}

describe("32-value formats", () => {
  it("Q4_0: d = 0.5, nibbles j and 15 − j give (q − 8)·0.5", () => {
    const data = block({ f16: 0x3800 }, range(16, (j) => j | ((15 - j) << 4)));
    const x = dequantize(GGMLType.Q4_0, data, 32);
    // Value j < 16 is the low nibble of byte j, value 16 + j its high nibble.
    expectValues(x, (i) => (i < 16 ? (i - 8) * 0.5 : (15 - (i - 16) - 8) * 0.5));
    expect(x[0]).toBe(-4);
    expect(x[15]).toBe(3.5);
    expect(x[16]).toBe(3.5);
    expect(x[31]).toBe(-4);
  });

  it("Q4_0: quantizing exactly representable values gives back the hand-built bytes", () => {
    const data = block({ f16: 0x3800 }, range(16, (j) => j | ((15 - j) << 4)));
    // The largest magnitude is −4 (q = 0), so d = −4 / −8 = 0.5 and every q is exact.
    expect(Array.from(quantize(GGMLType.Q4_0, dequantize(GGMLType.Q4_0, data, 32)))).toEqual(Array.from(data));
  });

  it("Q4_1: d = 0.25, m = −1: x = q·0.25 − 1", () => {
    const data = block({ f16: 0x3400 }, { f16: 0xbc00 }, range(16, (j) => j | ((15 - j) << 4)));
    const x = dequantize(GGMLType.Q4_1, data, 32);
    expectValues(x, (i) => (i < 16 ? i : 15 - (i - 16)) * 0.25 - 1);
    expect(x[0]).toBe(-1);
    expect(x[15]).toBe(2.75);
  });

  // qh bytes 01 80 FF 00 = u32 0x00FF8001: bits 0, 15 and 16..23 are set.
  const qh = [0x01, 0x80, 0xff, 0x00];
  const highBit = (i: number): number => (i === 0 || i === 15 || (i >= 16 && i <= 23) ? 1 : 0);
  const low = (i: number): number => (i < 16 ? i : i - 16); // qs[j] = j | j << 4

  it("Q5_0: d = 1, the fifth bit of value i is bit i of qh; x = q − 16", () => {
    const data = block({ f16: 0x3c00 }, qh, range(16, (j) => j | (j << 4)));
    const x = dequantize(GGMLType.Q5_0, data, 32);
    expectValues(x, (i) => low(i) + 16 * highBit(i) - 16);
    expect(x[0]).toBe(0); // 0 + 16 − 16
    expect(x[1]).toBe(-15); // 1 − 16
    expect(x[15]).toBe(15); // 15 + 16 − 16
    expect(x[16]).toBe(0); // bit 16 set
    expect(x[23]).toBe(7); // bit 23 set
    expect(x[24]).toBe(-8); // bit 24 clear
  });

  it("Q5_1: d = 0.5, m = 2: x = q·0.5 + 2", () => {
    const data = block({ f16: 0x3800 }, { f16: 0x4000 }, qh, range(16, (j) => j | (j << 4)));
    const x = dequantize(GGMLType.Q5_1, data, 32);
    expectValues(x, (i) => (low(i) + 16 * highBit(i)) * 0.5 + 2);
    expect(x[15]).toBe(17.5); // q = 31
    expect(x[24]).toBe(6); // q = 8
  });

  it("Q8_0: d = 0.25, signed bytes", () => {
    const qs = range(32, (j) => (j === 31 ? 127 : (j * 8 - 128) & 0xff));
    const x = dequantize(GGMLType.Q8_0, block({ f16: 0x3400 }, qs), 32);
    expectValues(x, (i) => (i === 31 ? 127 : i * 8 - 128) * 0.25);
    expect(x[0]).toBe(-32);
    expect(x[31]).toBe(31.75);
  });
});

describe("K-quants", () => {
  it("Q2_K: 4-bit scale and min per 16 values, 2-bit q in the 128/32 interleave", () => {
    // scales byte s: scale s (low nibble), min 15 − s (high nibble).
    const scales = range(16, (s) => s | ((15 - s) << 4));
    const qs = range(64, (k) => (k * 37) & 0xff);
    const data = block(scales, qs, { f16: 0x3800 }, { f16: 0x3400 });
    const x = dequantize(GGMLType.Q2_K, data, 256);
    // Value i: half n = ⌊i/128⌋, pair j = ⌊i/32⌋ mod 4, l = i mod 32 → bits 2j of qs[32n + l].
    expectValues(x, (i) => {
      const q = (qs[32 * (i >> 7) + (i & 31)] >> (2 * ((i >> 5) & 3))) & 3;
      const s = i >> 4;
      return 0.5 * s * q - 0.25 * (15 - s);
    });
    expect(x[0]).toBe(-3.75); // scale 0, min 15·0.25
    // Value 200: n = 1, j = 2, l = 8: qs[40] = 1480 mod 256 = 200 = 0b11_00_10_00 → bits 4–5 = 0.
    // Sub-block 12: −0.25·3.
    expect(x[200]).toBe(-0.75);
    // Value 232: n = 1, j = 3, l = 8 → bits 6–7 of 200 = 3; sub-block 14: 0.5·14·3 − 0.25·1.
    expect(x[232]).toBe(20.75);
  });

  it("Q3_K: hmask high bits, 2-bit low bits and the 12-byte 6-bit scale packing", () => {
    // Biased 6-bit scales l_i = 32 + 3(i − 8), i.e. signed −24, −21, …, 21.
    const biased = range(16, (i) => 32 + 3 * (i - 8));
    // Packing by hand: bytes 0–7 take the low nibbles of scales i (low) and i + 8 (high);
    // byte 8 + k takes the top two bits of scales k, k + 4, k + 8, k + 12 in bit pairs 0–3.
    const packed = [
      ...range(8, (i) => (biased[i] & 0xf) | ((biased[i + 8] & 0xf) << 4)),
      ...range(4, (k) => range(4, (t) => (biased[k + 4 * t] >> 4) << (2 * t)).reduce((a, b) => a | b, 0)),
    ];
    // Spot-check the hand packing: scale 0 is 8 = 0b00_1000, scale 8 is 32 = 0b10_0000,
    // scale 4 is 20 = 0b01_0100, scale 12 is 44 = 0b10_1100.
    expect(packed[0]).toBe(0x08); // low nibbles 8 and 0
    expect(packed[4]).toBe(0xc4); // low nibbles 4 (scale 4) and 12 (scale 12)
    expect(packed[8]).toBe(0b10_10_01_00); // top bits of scales 0, 4, 8, 12: 0, 1, 2, 2
    const hmask = range(32, (k) => (k * 53) & 0xff);
    const qs = range(64, (k) => (k * 29 + 7) & 0xff);
    const data = block(hmask, qs, packed, { f16: 0x3000 });
    const x = dequantize(GGMLType.Q3_K, data, 256);
    expectValues(x, (i) => {
      const low2 = (qs[32 * (i >> 7) + (i & 31)] >> (2 * ((i >> 5) & 3))) & 3;
      const high = (hmask[i & 31] >> (i >> 5)) & 1; // bit ⌊i/32⌋ of hmask[i mod 32]
      return 0.125 * (biased[i >> 4] - 32) * (low2 - (high ? 0 : 4));
    });
    // Value 0: qs[0] = 7 → low2 = 3; hmask[0] = 0 → high clear → q = −1; scale −24 → 3.
    expect(x[0]).toBe(3);
  });

  // Q4_K/Q5_K sub-block scales and mins, and their 12 bytes packed by hand:
  // bytes 0–3: scale j | (scale j+4 >> 4) << 6; bytes 4–7: min j | (min j+4 >> 4) << 6;
  // bytes 8–11: (scale j+4 & 15) | (min j+4 & 15) << 4.
  const sc = [1, 2, 3, 63, 17, 33, 48, 5];
  const mn = [0, 10, 20, 30, 40, 50, 60, 63];
  const packedK4 = [0x41, 0x82, 0xc3, 0x3f, 0x80, 0xca, 0xd4, 0xde, 0x81, 0x21, 0xc0, 0xf5];

  it("Q4_K: 6-bit scales/mins packing and nibble order", () => {
    const qs = range(128, (k) => (k * 91 + 3) & 0xff);
    const data = block({ f16: 0x3800 }, { f16: 0x3000 }, packedK4, qs);
    const x = dequantize(GGMLType.Q4_K, data, 256);
    // Value i: chunk c = ⌊i/64⌋, byte qs[32c + i mod 32], low nibble for the first 32 of
    // the chunk, high for the second; sub-block ⌊i/32⌋.
    expectValues(x, (i) => {
      const byte = qs[32 * (i >> 6) + (i & 31)];
      const q = i & 32 ? byte >> 4 : byte & 0xf;
      return 0.5 * sc[i >> 5] * q - 0.125 * mn[i >> 5];
    });
    // Value 255: sub-block 7 (scale 5, min 63); qs[127] = (127·91 + 3) mod 256 = 40 → high nibble 2.
    expect(x[255]).toBe(0.5 * 5 * 2 - 0.125 * 63);
  });

  it("Q5_K: as Q4_K plus a fifth bit from qh (bit 2c or 2c + 1 of qh[i mod 32])", () => {
    const qh = range(32, (k) => (k * 71 + 5) & 0xff);
    const qs = range(128, (k) => (k * 91 + 3) & 0xff);
    const data = block({ f16: 0x3800 }, { f16: 0x3000 }, packedK4, qh, qs);
    const x = dequantize(GGMLType.Q5_K, data, 256);
    expectValues(x, (i) => {
      const byte = qs[32 * (i >> 6) + (i & 31)];
      const q4 = i & 32 ? byte >> 4 : byte & 0xf;
      const h = (qh[i & 31] >> (i >> 5)) & 1; // bit 2c + (⌊i/32⌋ mod 2) = ⌊i/32⌋
      return 0.5 * sc[i >> 5] * (q4 + 16 * h) - 0.125 * mn[i >> 5];
    });
    // Value 63: sub-block 1 (scale 2, min 10); qs[31] = (31·91 + 3) mod 256 = 8 → high nibble 0;
    // qh[31] = (31·71 + 5) mod 256 = 158 = 0b1001_1110 → bit 1 set → q = 16.
    expect(x[63]).toBe(0.5 * 2 * 16 - 0.125 * 10);
  });

  it("Q6_K: ql/qh interleave and signed 8-bit scales", () => {
    const ql = range(128, (k) => (k * 113 + 17) & 0xff);
    const qh = range(64, (k) => (k * 59 + 1) & 0xff);
    const scales = [1, -1, 2, -2, 3, -3, 127, -128, 0, 5, -5, 64, -64, 100, -100, 7];
    const data = block(ql, qh, scales.map((s) => s & 0xff), { f16: 0x2c00 });
    const x = dequantize(GGMLType.Q6_K, data, 256);
    // Value i: half n = ⌊i/128⌋, quarter k = ⌊i/32⌋ mod 4, l = i mod 32. Low 4 bits from
    // ql[64n + 32(k mod 2) + l] (low nibble for k < 2, high for k ≥ 2); top 2 bits from
    // bits 2k of qh[32n + l]; scale ⌊i/16⌋.
    expectValues(x, (i) => {
      const n = i >> 7;
      const k = (i >> 5) & 3;
      const l = i & 31;
      const lowByte = ql[64 * n + 32 * (k & 1) + l];
      const low4 = k < 2 ? lowByte & 0xf : lowByte >> 4;
      const high2 = (qh[32 * n + l] >> (2 * k)) & 3;
      return 0.0625 * scales[i >> 4] * ((low4 | (high2 << 4)) - 32);
    });
    // Value 0: ql[0] = 17 → low 1; qh[0] = 1 → high 1 → q = 17 − 32 = −15; scale 1.
    expect(x[0]).toBe(0.0625 * -15);
  });
});

describe("F16 and BF16 tensors", () => {
  it("decodes little-endian halves", () => {
    const x = dequantize(GGMLType.F16, block({ f16: 0x3c00 }, { f16: 0xc000 }, { f16: 0x7bff }, { f16: 0x0001 }), 4);
    expect(Array.from(x)).toEqual([1, -2, 65504, 2 ** -24]);
  });

  it("decodes little-endian bfloat16", () => {
    const x = dequantize(GGMLType.BF16, block({ f16: 0x3f80 }, { f16: 0x4049 }, { f16: 0xc000 }), 3);
    expect(Array.from(x)).toEqual([1, 3.140625, -2]);
  });
});
