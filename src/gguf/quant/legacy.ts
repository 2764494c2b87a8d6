/**
 * GGML's 32-value block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (ggml-common.h).
 *
 * Layouts, little-endian, one block per 32 values:
 * - Q4_0 (18 B): d:f16, qs[16]. x[j] = (lo4(qs[j]) - 8)·d, x[j+16] = (hi4(qs[j]) - 8)·d.
 * - Q4_1 (20 B): d:f16, m:f16, qs[16]. x = q·d + m with the same nibble order.
 * - Q5_0 (22 B): d:f16, qh:u32, qs[16]. Bit j of qh is bit 4 of x[j], bit j+16 that of
 *   x[j+16]; x = (q - 16)·d.
 * - Q5_1 (24 B): d:f16, m:f16, qh:u32, qs[16]. x = q·d + m.
 * - Q8_0 (34 B): d:f16, qs[32] as int8. x = q·d.
 *
 * The encoders follow GGML's reference rounding (`quantize_row_*_ref`) step by step in
 * f32 arithmetic (`Math.fround` after each operation, as C does with floats), so they
 * produce the same bytes as llama.cpp's reference quantizer.
 */
import { readU16, writeU16, f32ToF16Bits } from "./float.ts";

const fround = Math.fround;

/** Values per block of every format in this file. */
export const QK = 32;

/** Dequantizes `nBlocks` Q4_0 blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ4_0(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 18;
    const y = outOffset + b * QK;
    const d = f16[readU16(src, o)];
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j];
      out[y + j] = ((q & 0xf) - 8) * d;
      out[y + j + 16] = ((q >>> 4) - 8) * d;
    }
  }
}

/** Dequantizes `nBlocks` Q4_1 blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ4_1(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 20;
    const y = outOffset + b * QK;
    const d = f16[readU16(src, o)];
    const m = f16[readU16(src, o + 2)];
    for (let j = 0; j < 16; j++) {
      const q = src[o + 4 + j];
      // q·d is exact in f32 (4-bit by 11-bit), so the store rounds once, like C's float sum.
      out[y + j] = (q & 0xf) * d + m;
      out[y + j + 16] = (q >>> 4) * d + m;
    }
  }
}

/** Dequantizes `nBlocks` Q5_0 blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ5_0(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 22;
    const y = outOffset + b * QK;
    const d = f16[readU16(src, o)];
    const qh = readU32(src, o + 2);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 6 + j];
      const h0 = ((qh >>> j) & 1) << 4;
      const h1 = ((qh >>> (j + 16)) & 1) << 4;
      out[y + j] = (((q & 0xf) | h0) - 16) * d;
      out[y + j + 16] = (((q >>> 4) | h1) - 16) * d;
    }
  }
}

/** Dequantizes `nBlocks` Q5_1 blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ5_1(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 24;
    const y = outOffset + b * QK;
    const d = f16[readU16(src, o)];
    const m = f16[readU16(src, o + 2)];
    const qh = readU32(src, o + 4);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 8 + j];
      const h0 = ((qh >>> j) & 1) << 4;
      const h1 = ((qh >>> (j + 16)) & 1) << 4;
      out[y + j] = ((q & 0xf) | h0) * d + m;
      out[y + j + 16] = ((q >>> 4) | h1) * d + m;
    }
  }
}

/** Dequantizes `nBlocks` Q8_0 blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ8_0(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 34;
    const y = outOffset + b * QK;
    const d = f16[readU16(src, o)];
    for (let j = 0; j < QK; j++) out[y + j] = ((src[o + 2 + j] << 24) >> 24) * d; // int8 sign extension
  }
}

/** Little-endian u32 at `offset`, as an unsigned number. */
function readU32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24)) >>> 0;
}

/** The value with the largest magnitude (the first one on ties) of x[off..off+32). */
function signedAbsMax(x: Float32Array, off: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QK; j++) {
    const v = x[off + j];
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

/** Smallest and largest of x[off..off+32). */
function minMax(x: Float32Array, off: number): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (let j = 0; j < QK; j++) {
    const v = x[off + j];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

/**
 * Quantizes `x` (a whole number of blocks) to Q4_0. The value of largest magnitude maps
 * to q = 0 exactly (d = max / -8), which uses all 16 levels and makes re-quantizing the
 * dequantized block reproduce the same bytes.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK;
  const dst = new Uint8Array(nBlocks * 18);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * QK;
    const o = b * 18;
    const d = fround(signedAbsMax(x, off) / -8);
    const id = d !== 0 ? fround(1 / d) : 0;
    writeU16(dst, o, f32ToF16Bits(d));
    for (let j = 0; j < 16; j++) {
      // C's (int8_t) cast truncates; the operands are ≥ 0.5 so that is a floor.
      const q0 = Math.min(15, Math.trunc(fround(fround(x[off + j] * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(fround(fround(x[off + j + 16] * id) + 8.5)));
      dst[o + 2 + j] = q0 | (q1 << 4);
    }
  }
  return dst;
}

/** Quantizes `x` to Q4_1: d = (max - min) / 15, m = min, q = round((x - min) / d). */
export function quantizeQ4_1(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK;
  const dst = new Uint8Array(nBlocks * 20);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * QK;
    const o = b * 20;
    const [min, max] = minMax(x, off);
    const d = fround(fround(max - min) / 15);
    const id = d !== 0 ? fround(1 / d) : 0;
    writeU16(dst, o, f32ToF16Bits(d));
    writeU16(dst, o + 2, f32ToF16Bits(min));
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(fround(fround(fround(x[off + j] - min) * id) + 0.5)));
      const q1 = Math.min(15, Math.trunc(fround(fround(fround(x[off + j + 16] - min) * id) + 0.5)));
      dst[o + 4 + j] = q0 | (q1 << 4);
    }
  }
  return dst;
}

/** Quantizes `x` to Q5_0: like Q4_0 with 32 levels (d = max / -16). */
export function quantizeQ5_0(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK;
  const dst = new Uint8Array(nBlocks * 22);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * QK;
    const o = b * 22;
    const d = fround(signedAbsMax(x, off) / -16);
    const id = d !== 0 ? fround(1 / d) : 0;
    writeU16(dst, o, f32ToF16Bits(d));
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(31, Math.trunc(fround(fround(x[off + j] * id) + 16.5)));
      const q1 = Math.min(31, Math.trunc(fround(fround(x[off + j + 16] * id) + 16.5)));
      dst[o + 6 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
      qh |= ((q0 >>> 4) << j) | ((q1 >>> 4) << (j + 16));
    }
    writeU32(dst, o + 2, qh);
  }
  return dst;
}

/** Quantizes `x` to Q5_1: like Q4_1 with 32 levels (d = (max - min) / 31). */
export function quantizeQ5_1(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK;
  const dst = new Uint8Array(nBlocks * 24);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * QK;
    const o = b * 24;
    const [min, max] = minMax(x, off);
    const d = fround(fround(max - min) / 31);
    const id = d !== 0 ? fround(1 / d) : 0;
    writeU16(dst, o, f32ToF16Bits(d));
    writeU16(dst, o + 2, f32ToF16Bits(min));
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      // GGML does not clamp here; the clamp only guards against a last-ulp overshoot.
      const q0 = Math.min(31, Math.trunc(fround(fround(fround(x[off + j] - min) * id) + 0.5)));
      const q1 = Math.min(31, Math.trunc(fround(fround(fround(x[off + j + 16] - min) * id) + 0.5)));
      dst[o + 8 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
      qh |= ((q0 >>> 4) << j) | ((q1 >>> 4) << (j + 16));
    }
    writeU32(dst, o + 4, qh);
  }
  return dst;
}

/** Quantizes `x` to Q8_0: d = max|x| / 127, q = round(x / d) with ties away from zero (C `roundf`). */
export function quantizeQ8_0(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK;
  const dst = new Uint8Array(nBlocks * 34);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * QK;
    const o = b * 34;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[off + j]));
    const d = fround(amax / 127);
    const id = d !== 0 ? fround(1 / d) : 0;
    writeU16(dst, o, f32ToF16Bits(d));
    for (let j = 0; j < QK; j++) {
      const v = fround(x[off + j] * id);
      const q = v < 0 ? -Math.round(-v) : Math.round(v);
      dst[o + 2 + j] = q & 0xff;
    }
  }
  return dst;
}

/** Writes a little-endian u32 at `offset`. */
function writeU32(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value & 0xff;
  bytes[offset + 1] = (value >>> 8) & 0xff;
  bytes[offset + 2] = (value >>> 16) & 0xff;
  bytes[offset + 3] = (value >>> 24) & 0xff;
}
