/**
 * F16 and BF16 conversions against bit patterns written out by hand from the IEEE 754
 * definitions, plus exhaustive checks over all 65,536 half patterns.
 */
import { describe, expect, it } from "vitest";
import {
  bf16BitsToF32,
  f16BitsToF32,
  f16ToF32Table,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "../../../src/gguf/quant/index.ts";

describe("f32ToF16Bits", () => {
  it.each([
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest finite half
    [65519, 0x7bff], // below the 65504/65536 midpoint
    [65520, 0x7c00], // the midpoint: ties to even, and the even neighbour is inf
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [1023.5 * 2 ** -24, 0x0400], // midpoint 0x3FF/0x400: even is 0x400 (carry into the normals)
    [2 ** -25, 0x0000], // half the smallest subnormal: ties to even (0)
    [1.5 * 2 ** -25, 0x0001], // above the midpoint
    [3 * 2 ** -25, 0x0002], // midpoint of 1 and 2 subnormal units: even is 2
    [1e-10, 0x0000],
    [-1e-10, 0x8000],
    [1 + 2 ** -11, 0x3c00], // midpoint of 0x3C00/0x3C01: even is 0x3C00
    [1 + 3 * 2 ** -11, 0x3c02], // midpoint of 0x3C01/0x3C02: even is 0x3C02
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the midpoint
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ])("%s → %s", (x, bits) => {
    expect(f32ToF16Bits(x)).toBe(bits);
  });

  it("keeps the sign of zero and gives NaN a quiet pattern", () => {
    expect(f32ToF16Bits(0)).toBe(0x0000);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(NaN)).toBe(0x7e00);
  });

  it("rounds every midpoint between neighbouring halves to the even one", () => {
    // For each pair of neighbouring finite positive halves, the midpoint (exact in f32:
    // 12 significant bits) must round to the one with an even pattern, and the values
    // one f32 ulp either side of it to the nearer one.
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    for (let h = 0; h < 0x7bff; h++) {
      const lo = f16BitsToF32(h);
      const hi = f16BitsToF32(h + 1);
      f32[0] = (lo + hi) / 2;
      const mid = f32[0];
      expect(mid).toBe((lo + hi) / 2);
      const even = h % 2 === 0 ? h : h + 1;
      if (f32ToF16Bits(mid) !== even) expect.fail(`midpoint after 0x${h.toString(16)} → 0x${f32ToF16Bits(mid).toString(16)}`);
      u32[0] += 1;
      if (f32ToF16Bits(f32[0]) !== h + 1) expect.fail(`above midpoint after 0x${h.toString(16)}`);
      u32[0] -= 2;
      if (f32ToF16Bits(f32[0]) !== h) expect.fail(`below midpoint after 0x${h.toString(16)}`);
    }
  });

  it("inverts f16BitsToF32 on every non-NaN pattern", () => {
    for (let h = 0; h < 0x10000; h++) {
      const exp = (h >> 10) & 0x1f;
      if (exp === 31 && (h & 0x3ff) !== 0) continue;
      if (f32ToF16Bits(f16BitsToF32(h)) !== h) expect.fail(`0x${h.toString(16)} does not round-trip`);
    }
  });

  const f16round = (Math as { f16round?: (x: number) => number }).f16round;
  it.runIf(typeof f16round === "function")("agrees with Math.f16round where the runtime has it", () => {
    for (const x of [0.1, 1 / 3, 65519, 65520, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -11, 12345.678, -7e-6]) {
      expect(f16BitsToF32(f32ToF16Bits(x))).toBe(f16round?.(Math.fround(x)));
    }
  });
});

describe("f16BitsToF32", () => {
  it.each([
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504],
    [0x0001, 2 ** -24],
    [0x03ff, 1023 * 2 ** -24],
    [0x0400, 2 ** -14],
    [0x3555, 0.333251953125],
    [0x2e66, 0.0999755859375],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ])("%s → %s", (bits, x) => {
    expect(f16BitsToF32(bits)).toBe(x);
  });

  it("decodes -0 and NaN", () => {
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
    expect(f16BitsToF32(0xfc01)).toBeNaN();
  });

  it("has a lookup table equal to the function on every pattern", () => {
    const table = f16ToF32Table();
    expect(table.length).toBe(65536);
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToF32(h);
      if (!Object.is(table[h], v) && !(Number.isNaN(v) && Number.isNaN(table[h]))) {
        expect.fail(`table[0x${h.toString(16)}] = ${table[h]}, expected ${v}`);
      }
    }
  });
});

describe("bfloat16", () => {
  it.each([
    [1, 0x3f80],
    [-2, 0xc000],
    [3.140625, 0x4049],
    [1 + 2 ** -8, 0x3f80], // midpoint of 0x3F80/0x3F81: even is 0x3F80
    [1 + 3 * 2 ** -8, 0x3f82], // midpoint of 0x3F81/0x3F82: even is 0x3F82
    [1 + 2 ** -8 + 2 ** -20, 0x3f81], // just above the midpoint
    [3.4028234663852886e38, 0x7f80], // f32 max rounds up to inf
    [2 ** -133, 0x0001], // f32 subnormal that bf16 keeps (GGML no longer flushes)
    [2 ** -149, 0x0000], // smallest f32 subnormal: below half a bf16 unit
    [Infinity, 0x7f80],
    [-Infinity, 0xff80],
  ])("%s → %s", (x, bits) => {
    expect(f32ToBf16Bits(x)).toBe(bits);
  });

  it("keeps -0 and quiets NaN", () => {
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    expect(f32ToBf16Bits(NaN)).toBe(0x7fc0);
  });

  it("decodes the top half of an f32", () => {
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0x4049)).toBe(3.140625);
    expect(bf16BitsToF32(0x0001)).toBe(2 ** -133);
    expect(bf16BitsToF32(0xff80)).toBe(-Infinity);
    expect(Object.is(bf16BitsToF32(0x8000), -0)).toBe(true);
    expect(bf16BitsToF32(0x7fc0)).toBeNaN();
  });

  it("inverts bf16BitsToF32 on every non-NaN pattern", () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0) continue;
      if (f32ToBf16Bits(bf16BitsToF32(h)) !== h) expect.fail(`0x${h.toString(16)} does not round-trip`);
    }
  });
});
