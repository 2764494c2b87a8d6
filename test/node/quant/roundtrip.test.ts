/**
 * quantize → dequantize on weight-like random data (fixed seed), with per-type error
 * bounds derived from each format's step size; unaligned input; typed errors.
 */
import { describe, expect, it } from "vitest";
import { GGUFError, InvalidArgumentError, UnsupportedTensorTypeError } from "../../../src/errors.ts";
import { BLOCK_LAYOUTS, GGMLType, QK_K } from "../../../src/gguf/ggml-type.ts";
import {
  DEQUANTIZE_TYPES,
  dequantize,
  dequantizeInto,
  f16BitsToF32,
  f32ToF16Bits,
  QUANTIZE_TYPES,
  quantize,
} from "../../../src/gguf/quant/index.ts";
import { seededRandom, weightLike } from "./random.ts";

const N = 64 * QK_K; // 16,384 values: 512 small blocks, 64 super-blocks

/**
 * How far f16 rounding can move a stored scale `d`: half an ulp, relative 2^-11 for
 * normal halves and the fixed 2^-25 in the subnormal range (|d| < 2^-14).
 */
function f16Err(d: number): number {
  return Math.max(Math.abs(d) * 2 ** -11, 2 ** -25);
}

/**
 * Largest allowed |x − x̂| for a block whose values span [min, max] with M = max |x|.
 * Each bound is the format's quantization step with the slack it needs, stated per line.
 */
type Bound = (M: number, min: number, max: number) => number;
const BOUNDS: ReadonlyMap<GGMLType, Bound> = new Map<GGMLType, Bound>([
  // Exact copy.
  [GGMLType.F32, () => 0],
  // Round to nearest: half an ulp (f16: relative 2^-11, or 2^-25 below its normal
  // range; bf16: relative 2^-8).
  [GGMLType.F16, (M) => f16Err(M)],
  [GGMLType.BF16, (M) => M * 2 ** -8],
  // d = M/127: half a step, plus |q|·|d_f16 − d| ≤ 127·f16Err(d) from storing d as f16.
  [GGMLType.Q8_0, (M) => M / 254 + 127 * f16Err(M / 127)],
  // d = M/8 with levels −8..7 on the side of the largest value: the opposite extreme can
  // clip at 7d, a full step (M/8); plus 8·f16Err(d) for the f16 scale.
  [GGMLType.Q4_0, (M) => M / 8 + 8 * f16Err(M / 8)],
  // As Q4_0 with 32 levels: one step M/16 plus 16·f16Err(d).
  [GGMLType.Q5_0, (M) => M / 16 + 16 * f16Err(M / 16)],
  // d = (max − min)/15: half a step, plus 15·f16Err(d) for d and f16Err(min) for m.
  [GGMLType.Q4_1, (M, min, max) => (max - min) / 30 + 15 * f16Err((max - min) / 15) + f16Err(min)],
  [GGMLType.Q5_1, (M, min, max) => (max - min) / 62 + 31 * f16Err((max - min) / 31) + f16Err(min)],
  // K-quants (M over the 256-value super-block): one step of the widest sub-block range,
  // 2M/(levels − 1) (asymmetric) or M/(levels/2) (symmetric), times 1.5. Rounding alone
  // costs half a step; the rest covers storing sub-block scales/mins in 4 or 6 bits
  // under an f16 super-scale (a rounded scale can leave the extreme value clipped) and
  // the least-squares search, which may clip an outlier when that lowers the block's
  // total error.
  [GGMLType.Q2_K, (M) => 1.5 * ((2 * M) / 3)],
  [GGMLType.Q3_K, (M) => 1.5 * (M / 4)],
  [GGMLType.Q4_K, (M) => 1.5 * ((2 * M) / 15)],
  [GGMLType.Q5_K, (M) => 1.5 * ((2 * M) / 31)],
  [GGMLType.Q6_K, (M) => 1.5 * (M / 32)],
  // IQ4 (levels −127 … 113, widest gap 24 between 89 and 113): half the widest gap at the
  // scale that puts M on the short end, 12·M/113, times 1.5 as for the K-quants (the
  // least-squares search may clip the far extreme), plus 127·f16Err(d) for the f16 scale.
  [GGMLType.IQ4_NL, (M) => 1.5 * ((12 * M) / 113) + 127 * f16Err(M / 113)],
  // IQ4_XS (M over the super-block): as IQ4_NL, plus the 6-bit sub-block scale, rounded to
  // half a step of d = M/(32·113) or so, times |level| ≤ 127: 127·M/(64·113) < M/56.
  [GGMLType.IQ4_XS, (M) => 1.5 * ((12 * M) / 113) + M / 56 + 127 * f16Err(M / 113)],
]);

/**
 * Blocks of awkward shapes, one 256-value super-block each: all zero, constant, all
 * positive, all negative, tiny (scales in f16's subnormal range), huge, one spike.
 */
function edgeShapes(): Float32Array {
  const base = weightLike(7 * QK_K, 77);
  const shaped = [
    () => 0,
    () => -0.75,
    (v: number) => Math.abs(v) + 0.5,
    (v: number) => -Math.abs(v) - 0.5,
    (v: number) => v * 1e-3,
    (v: number) => v * 1e3,
    (v: number, i: number) => (i % QK_K === 100 ? 50 : v * 0.01),
  ];
  return base.map((v, i) => shaped[Math.floor(i / QK_K)](v, i));
}

function layoutOf(type: GGMLType): { name: string; blockSize: number; typeSize: number } {
  const layout = BLOCK_LAYOUTS.get(type);
  if (layout === undefined) throw new Error(`no layout for ${type}`);
  return layout;
}

function rmsError(a: Float32Array, b: Float32Array): number {
  let se = 0;
  let sx = 0;
  for (let i = 0; i < a.length; i++) {
    se += (a[i] - b[i]) ** 2;
    sx += a[i] ** 2;
  }
  return Math.sqrt(se / sx);
}

describe("round trip", () => {
  const x = weightLike(N, 1234);

  it("covers every type that can be quantized", () => {
    expect([...QUANTIZE_TYPES].sort()).toEqual([...BOUNDS.keys()].sort());
    for (const t of QUANTIZE_TYPES) expect(DEQUANTIZE_TYPES.has(t)).toBe(true);
  });

  const datasets: [string, Float32Array][] = [
    ["weight-like values", x],
    ["edge-shaped blocks", edgeShapes()],
  ];
  for (const [type, bound] of BOUNDS) {
    const layout = layoutOf(type);
    it.each(datasets)(`${layout.name}: |x − dequantize(quantize(x))| stays within the step-size bound on %s`, (_, data) => {
      const bytes = quantize(type, data);
      expect(bytes.length).toBe((data.length / layout.blockSize) * layout.typeSize);
      const y = dequantize(type, bytes, data.length);
      // Bounds are per block of 32 (per value for floats, per 256 for K-quants and IQ4_XS).
      const span = layout.blockSize;
      for (let b = 0; b < data.length; b += span) {
        let M = 0;
        let min = Infinity;
        let max = -Infinity;
        for (let i = b; i < b + span; i++) {
          M = Math.max(M, Math.abs(data[i]));
          min = Math.min(min, data[i]);
          max = Math.max(max, data[i]);
        }
        // Plus the f32 rounding of the decoded value itself (M·2^-24, doubled for slack).
        const limit = bound(M, min, max) + M * 2 ** -23;
        for (let i = b; i < b + span; i++) {
          const err = Math.abs(data[i] - y[i]);
          if (!(err <= limit)) expect.fail(`${layout.name} value ${i}: |${data[i]} − ${y[i]}| = ${err} > ${limit}`);
        }
      }
    });
  }

  it("K-quants beat the 32-value formats of the same width in RMS error", () => {
    // Same bits per weight (plus a little for scales): the per-sub-block scale search
    // must pay for itself on weight-like data.
    const err = (t: GGMLType) => rmsError(x, dequantize(t, quantize(t, x), N));
    expect(err(GGMLType.Q4_K)).toBeLessThan(err(GGMLType.Q4_1));
    expect(err(GGMLType.Q5_K)).toBeLessThan(err(GGMLType.Q5_1));
    // And more bits means less error.
    expect(err(GGMLType.Q3_K)).toBeLessThan(err(GGMLType.Q2_K));
    expect(err(GGMLType.Q4_K)).toBeLessThan(err(GGMLType.Q3_K));
    expect(err(GGMLType.Q6_K)).toBeLessThan(err(GGMLType.Q5_K));
  });

  it("is deterministic", () => {
    for (const type of QUANTIZE_TYPES) {
      expect(Buffer.from(quantize(type, x)).equals(Buffer.from(quantize(type, x)))).toBe(true);
    }
  });

  it.each([GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q5_0])(
    "type %i: re-quantizing dequantized values reproduces the bytes",
    (type) => {
      // The largest-magnitude value maps to the extreme level with d = max/−levels, so the
      // dequantized block has the same maximum, the same (already f16) d and exact levels.
      for (const seed of [1, 2, 3]) {
        const bytes = quantize(type, weightLike(N, seed));
        const again = quantize(type, dequantize(type, bytes, N));
        expect(Buffer.from(again).equals(Buffer.from(bytes))).toBe(true);
      }
    },
  );

  it("encodes all-zero and constant blocks exactly", () => {
    const zeros = new Float32Array(QK_K);
    const constant = new Float32Array(QK_K).fill(-0.75); // exactly representable as f16
    for (const type of QUANTIZE_TYPES) {
      // (q − 8)·0 is −0 for the low levels, as in GGML's float code; == 0 accepts both zeros.
      expect(dequantize(type, quantize(type, zeros), QK_K).every((v) => v === 0)).toBe(true);
    }
    for (const type of QUANTIZE_TYPES) {
      // Symmetric formats hold −0.75 as the extreme level of d = 0.75/levels, asymmetric
      // ones as their offset; only an f16-rounded scale (≤ 0.75·2^-11 off) is inexact.
      const y = dequantize(type, quantize(type, constant), QK_K);
      expect(Math.max(...Array.from(y, (v) => Math.abs(v + 0.75)))).toBeLessThan(1e-3);
    }
  });
});

describe("input handling", () => {
  it("dequantizes unaligned subarrays of every type", () => {
    const rand = seededRandom(99);
    const x = Float32Array.from({ length: 2 * QK_K }, () => rand() * 2 - 1);
    for (const type of QUANTIZE_TYPES) {
      const bytes = quantize(type, x);
      const expected = dequantize(type, bytes, x.length);
      for (const shift of [1, 2, 3]) {
        const holder = new Uint8Array(bytes.length + 8);
        holder.set(bytes, shift);
        const view = holder.subarray(shift, shift + bytes.length);
        expect(Array.from(dequantize(type, view, x.length))).toEqual(Array.from(expected));
      }
    }
  });

  it("quantizes a Float32Array that is a view into a larger buffer", () => {
    const rand = seededRandom(5);
    const whole = Float32Array.from({ length: 3 * QK_K }, () => rand() - 0.5);
    const part = whole.subarray(QK_K, 2 * QK_K);
    for (const type of QUANTIZE_TYPES) {
      expect(Array.from(quantize(type, part))).toEqual(Array.from(quantize(type, part.slice())));
    }
  });

  it("F16 tensors decode through the same conversion as the scalar helper", () => {
    const bits = [0x3c00, 0x8001, 0x7bff, 0xfc00, 0x0400, 0x3555];
    const bytes = Uint8Array.from(bits.flatMap((h) => [h & 0xff, h >> 8]));
    expect(Array.from(dequantize(GGMLType.F16, bytes, bits.length))).toEqual(bits.map(f16BitsToF32));
    const back = quantize(GGMLType.F16, Float32Array.from(bits.map(f16BitsToF32)));
    expect(Array.from(back)).toEqual(Array.from(bytes));
    expect(f32ToF16Bits(f16BitsToF32(0x8001))).toBe(0x8001);
  });

  it("dequantizeInto writes at an offset and leaves the rest alone", () => {
    const x = Float32Array.from({ length: 32 }, (_, i) => i - 16);
    const bytes = quantize(GGMLType.Q8_0, x);
    const out = new Float32Array(40).fill(7);
    dequantizeInto(GGMLType.Q8_0, bytes, out, 4, 32);
    expect(out[3]).toBe(7);
    expect(out[36]).toBe(7);
    expect(Array.from(out.subarray(4, 36))).toEqual(Array.from(dequantize(GGMLType.Q8_0, bytes, 32)));
    expect(() => dequantizeInto(GGMLType.Q8_0, bytes, out, 10, 32)).toThrow(InvalidArgumentError);
  });
});

describe("typed errors", () => {
  it("refuses types it cannot decode, naming the tensor and type", () => {
    const err = catchError(() => dequantize(GGMLType.Q8_1, new Uint8Array(36), 32, { tensor: "blk.0.attn_q.weight" }));
    expect(err).toBeInstanceOf(UnsupportedTensorTypeError);
    expect((err as UnsupportedTensorTypeError).code).toBe("UNSUPPORTED_TENSOR_TYPE");
    expect((err as Error).message).toContain("blk.0.attn_q.weight");
    expect((err as Error).message).toContain("Q8_1");
    expect(() => dequantize(99 as GGMLType, new Uint8Array(4), 1)).toThrow(UnsupportedTensorTypeError);
  });

  it("refuses sizes that do not match the layout", () => {
    const short = catchError(() => dequantize(GGMLType.Q4_0, new Uint8Array(17), 32, { tensor: "t" }));
    expect(short).toBeInstanceOf(GGUFError);
    expect((short as GGUFError).code).toBe("TENSOR_SIZE");
    expect((short as GGUFError).field).toBe("t");
    expect((short as Error).message).toContain("18 bytes");
    expect(() => dequantize(GGMLType.Q4_0, new Uint8Array(19), 32)).toThrow(GGUFError);
    expect(() => dequantize(GGMLType.Q4_K, new Uint8Array(144), 128)).toThrow(/256-value Q4_K blocks/);
    expect(() => dequantize(GGMLType.F32, new Uint8Array(8), 2.5)).toThrow(GGUFError);
  });

  it("refuses to quantize partial blocks, non-finite values and unknown types", () => {
    expect(() => quantize(GGMLType.Q4_K, new Float32Array(255))).toThrow(InvalidArgumentError);
    expect(() => quantize(GGMLType.Q8_0, new Float32Array(33))).toThrow(/32-value Q8_0 blocks/);
    const nan = new Float32Array(32);
    nan[7] = NaN;
    expect(() => quantize(GGMLType.Q4_0, nan)).toThrow(/index 7/);
    expect(() => quantize(GGMLType.Q8_1, new Float32Array(32))).toThrow(InvalidArgumentError);
    // Plain float formats carry NaN and infinity through.
    expect(dequantize(GGMLType.F16, quantize(GGMLType.F16, nan), 32)[7]).toBeNaN();
  });
});

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}
