/**
 * GGML's K-quant formats (super-blocks of 256 values, ggml-common.h), little-endian:
 *
 * - Q2_K (84 B): scales[16], qs[64], d:f16, dmin:f16. 16 sub-blocks of 16; each scales
 *   byte holds a 4-bit scale (low) and a 4-bit min (high); x = d·sc·q − dmin·m, q 2-bit.
 * - Q3_K (110 B): hmask[32], qs[64], scales[12], d:f16. 16 sub-blocks of 16 with 6-bit
 *   scales biased by 32; q = low2 − (high bit ? 0 : 4) ∈ [−4, 3]; x = d·(sc − 32)·q.
 * - Q4_K (144 B): d, dmin, scales[12], qs[128]. 8 sub-blocks of 32 with 6-bit scale and
 *   6-bit min each; x = d·sc·q − dmin·m, q 4-bit.
 * - Q5_K (176 B): d, dmin, scales[12], qh[32], qs[128]. As Q4_K with a fifth bit in qh.
 * - Q6_K (210 B): ql[128], qh[64], scales[16] as int8, d. 16 sub-blocks of 16;
 *   q = (low4 | high2 << 4) − 32; x = d·sc·q.
 *
 * Value order (shared by the 2- and 3-bit formats): value 128·n + 32·j + l (n: half,
 * j: bit pair, l < 32) sits in bits 2j..2j+1 of qs[32·n + l]; Q3_K's high bit of value
 * i is bit ⌊i/32⌋ of hmask[i mod 32]; the scale of value i is sub-block ⌊i/16⌋.
 *
 * Dequantization matches GGML's CPU code bit for bit: every product below is exact in
 * f32 (few-bit integers times an f16 scale), so a double product rounded once on store
 * equals C's float arithmetic.
 */
import { QK_K } from "../ggml-type.ts";
import { f16BitsToF32, f32ToF16Bits, readU16, writeU16 } from "./float.ts";
import { clamp, fitScaleMin, fitSymmetric, type ScaleFit } from "./kquant-fit.ts";

const fround = Math.fround;

/** Bytes per super-block, by format. */
const Q2_K_BYTES = 84;
const Q3_K_BYTES = 110;
const Q4_K_BYTES = 144;
const Q5_K_BYTES = 176;
const Q6_K_BYTES = 210;

// Scratch shared by the encoders and decoders (single-threaded, never escapes a call).
const levels = new Uint8Array(QK_K);
const subScales = new Float64Array(16);
const subMins = new Float64Array(16);
const intScales = new Int32Array(16);
const intMins = new Int32Array(16);
const fit: ScaleFit = { scale: 0, min: 0 };

// ---------------------------------------------------------------------------------
// Dequantization
// ---------------------------------------------------------------------------------

/** Dequantizes `nBlocks` Q2_K super-blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ2_K(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * Q2_K_BYTES;
    const y = outOffset + b * QK_K;
    const d = f16[readU16(src, o + 80)];
    const dmin = f16[readU16(src, o + 82)];
    for (let n = 0; n < 2; n++) {
      const qs = o + 16 + 32 * n;
      for (let j = 0; j < 4; j++) {
        const shift = 2 * j;
        for (let k = 0; k < 2; k++) {
          const sc = src[o + 8 * n + 2 * j + k];
          const dl = d * (sc & 0xf);
          const ml = dmin * (sc >>> 4);
          const yy = y + 128 * n + 32 * j + 16 * k;
          const qq = qs + 16 * k;
          for (let l = 0; l < 16; l++) out[yy + l] = dl * ((src[qq + l] >>> shift) & 3) - ml;
        }
      }
    }
  }
}

/** The 16 signed 6-bit scales of the Q3_K super-block at `o`, unbiased, into `dst`. */
function unpackQ3_KScales(src: Uint8Array, o: number, dst: Int32Array): void {
  const s = o + 96;
  for (let i = 0; i < 16; i++) {
    const low = i < 8 ? src[s + i] & 0xf : src[s + i - 8] >>> 4;
    const high = (src[s + 8 + (i & 3)] >>> (2 * (i >>> 2))) & 3;
    dst[i] = (low | (high << 4)) - 32;
  }
}

/** Dequantizes `nBlocks` Q3_K super-blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ3_K(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * Q3_K_BYTES;
    const y = outOffset + b * QK_K;
    const d = f16[readU16(src, o + 108)];
    unpackQ3_KScales(src, o, intScales);
    for (let n = 0; n < 2; n++) {
      const qs = o + 32 + 32 * n;
      for (let j = 0; j < 4; j++) {
        const shift = 2 * j;
        const hbit = 4 * n + j;
        for (let k = 0; k < 2; k++) {
          const dl = d * intScales[8 * n + 2 * j + k];
          const yy = y + 128 * n + 32 * j + 16 * k;
          for (let l = 16 * k; l < 16 * k + 16; l++) {
            const low = (src[qs + l] >>> shift) & 3;
            const high = (src[o + l] >>> hbit) & 1;
            out[yy + l - 16 * k] = dl * (low - (high === 1 ? 0 : 4));
          }
        }
      }
    }
  }
}

/**
 * Scale `j` (0..7) of the 12-byte Q4_K/Q5_K scale area at `s`: sub-blocks 0–3 keep
 * their 6-bit scale and min in the low bits of bytes 0–3 and 4–7; sub-blocks 4–7 keep
 * their low 4 bits in the nibbles of bytes 8–11 and their top 2 bits in the spare top
 * bits of bytes 0–3 (scale) and 4–7 (min).
 */
function scaleK4(src: Uint8Array, s: number, j: number): number {
  return j < 4 ? src[s + j] & 63 : (src[s + j + 4] & 0xf) | ((src[s + j - 4] >>> 6) << 4);
}

/** Min `j` (0..7) of the 12-byte Q4_K/Q5_K scale area at `s` (see {@link scaleK4}). */
function minK4(src: Uint8Array, s: number, j: number): number {
  return j < 4 ? src[s + j + 4] & 63 : (src[s + j + 4] >>> 4) | ((src[s + j] >>> 6) << 4);
}

/** Dequantizes `nBlocks` Q4_K super-blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ4_K(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * Q4_K_BYTES;
    const y = outOffset + b * QK_K;
    const d = f16[readU16(src, o)];
    const dmin = f16[readU16(src, o + 2)];
    for (let j = 0; j < 4; j++) {
      const d1 = d * scaleK4(src, o + 4, 2 * j);
      const m1 = dmin * minK4(src, o + 4, 2 * j);
      const d2 = d * scaleK4(src, o + 4, 2 * j + 1);
      const m2 = dmin * minK4(src, o + 4, 2 * j + 1);
      const qs = o + 16 + 32 * j;
      const yy = y + 64 * j;
      for (let l = 0; l < 32; l++) {
        const q = src[qs + l];
        out[yy + l] = d1 * (q & 0xf) - m1;
        out[yy + 32 + l] = d2 * (q >>> 4) - m2;
      }
    }
  }
}

/** Dequantizes `nBlocks` Q5_K super-blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ5_K(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * Q5_K_BYTES;
    const y = outOffset + b * QK_K;
    const d = f16[readU16(src, o)];
    const dmin = f16[readU16(src, o + 2)];
    for (let j = 0; j < 4; j++) {
      const d1 = d * scaleK4(src, o + 4, 2 * j);
      const m1 = dmin * minK4(src, o + 4, 2 * j);
      const d2 = d * scaleK4(src, o + 4, 2 * j + 1);
      const m2 = dmin * minK4(src, o + 4, 2 * j + 1);
      const qs = o + 48 + 32 * j;
      const yy = y + 64 * j;
      for (let l = 0; l < 32; l++) {
        const q = src[qs + l];
        const h = src[o + 16 + l] >>> (2 * j);
        out[yy + l] = d1 * ((q & 0xf) | ((h & 1) << 4)) - m1;
        out[yy + 32 + l] = d2 * ((q >>> 4) | ((h & 2) << 3)) - m2;
      }
    }
  }
}

/** Dequantizes `nBlocks` Q6_K super-blocks from `src` into `out` at `outOffset`. */
export function dequantizeQ6_K(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * Q6_K_BYTES;
    const y = outOffset + b * QK_K;
    const d = f16[readU16(src, o + 208)];
    for (let n = 0; n < 2; n++) {
      const ql = o + 64 * n;
      const qh = o + 128 + 32 * n;
      const sc = o + 192 + 8 * n;
      const yy = y + 128 * n;
      for (let l = 0; l < 32; l++) {
        const is = l >>> 4;
        const a = src[ql + l];
        const c = src[ql + 32 + l];
        const h = src[qh + l];
        // C computes (d·sc)·q: d·sc is exact, so one rounding of the exact product matches.
        out[yy + l] = d * int8(src[sc + is]) * (((a & 0xf) | ((h & 3) << 4)) - 32);
        out[yy + 32 + l] = d * int8(src[sc + is + 2]) * (((c & 0xf) | (((h >>> 2) & 3) << 4)) - 32);
        out[yy + 64 + l] = d * int8(src[sc + is + 4]) * (((a >>> 4) | (((h >>> 4) & 3) << 4)) - 32);
        out[yy + 96 + l] = d * int8(src[sc + is + 6]) * (((c >>> 4) | (((h >>> 6) & 3) << 4)) - 32);
      }
    }
  }
}

/** A byte read as a signed 8-bit integer. */
function int8(byte: number): number {
  return (byte << 24) >> 24;
}

// ---------------------------------------------------------------------------------
// Quantization
// ---------------------------------------------------------------------------------

/**
 * Quantizes the per-sub-block `values` (all ≥ 0) to integers in [0, qmax] under one
 * f16 super-block scale d = max/qmax; writes them to `ints` and returns d's f16 bits.
 */
function quantizeNonNegative(values: Float64Array, count: number, qmax: number, ints: Int32Array): number {
  let max = 0;
  for (let i = 0; i < count; i++) max = Math.max(max, values[i]);
  const bits = f32ToF16Bits(max / qmax);
  // Round against the stored (f16) scale so the integers fit what the decoder will see.
  const d = f16BitsToF32(bits);
  for (let i = 0; i < count; i++) ints[i] = d > 0 ? clamp(Math.round(values[i] / d), 0, qmax) : 0;
  return bits;
}

/**
 * Quantizes signed per-sub-block `values` to integers in [−nneg, nneg − 1] under one
 * f16 super-block scale; the value of largest magnitude maps to −nneg (its sign is
 * folded into d), using the one extra negative level.
 */
function quantizeSigned(values: Float64Array, count: number, nneg: number, ints: Int32Array): number {
  let amax = 0;
  let max = 0;
  for (let i = 0; i < count; i++) {
    if (Math.abs(values[i]) > amax) {
      amax = Math.abs(values[i]);
      max = values[i];
    }
  }
  const bits = f32ToF16Bits(max / -nneg);
  const d = f16BitsToF32(bits);
  for (let i = 0; i < count; i++) ints[i] = d !== 0 ? clamp(Math.round(values[i] / d), -nneg, nneg - 1) : 0;
  return bits;
}

/**
 * Nearest level of x + min under the effective (decoder-side) sub-block scale and min,
 * in [0, nmax]: the final assignment once the scales are fixed.
 */
function levelAsymmetric(v: number, scale: number, min: number, nmax: number): number {
  return scale > 0 ? clamp(Math.round((v + min) / scale), 0, nmax) : 0;
}

/** Quantizes `x` (whole super-blocks) to Q2_K. */
export function quantizeQ2_K(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK_K;
  const dst = new Uint8Array(nBlocks * Q2_K_BYTES);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * QK_K;
    const o = b * Q2_K_BYTES;
    for (let s = 0; s < 16; s++) {
      fitScaleMin(x, off + 16 * s, 16, 3, fit);
      subScales[s] = fit.scale;
      subMins[s] = fit.min;
    }
    const dBits = quantizeNonNegative(subScales, 16, 15, intScales);
    const mBits = quantizeNonNegative(subMins, 16, 15, intMins);
    writeU16(dst, o + 80, dBits);
    writeU16(dst, o + 82, mBits);
    const d = f16BitsToF32(dBits);
    const dmin = f16BitsToF32(mBits);
    for (let s = 0; s < 16; s++) {
      dst[o + s] = intScales[s] | (intMins[s] << 4);
      const scale = fround(d * intScales[s]);
      const min = fround(dmin * intMins[s]);
      for (let l = 0; l < 16; l++) levels[16 * s + l] = levelAsymmetric(x[off + 16 * s + l], scale, min, 3);
    }
    packTwoBit(levels, dst, o + 16);
  }
  return dst;
}

/** Packs 256 two-bit levels in the K-quant order (value 128n + 32j + l → bits 2j of byte 32n + l). */
function packTwoBit(src: Uint8Array, dst: Uint8Array, at: number): void {
  for (let n = 0; n < 2; n++) {
    for (let l = 0; l < 32; l++) {
      const i = 128 * n + l;
      dst[at + 32 * n + l] =
        (src[i] & 3) | ((src[i + 32] & 3) << 2) | ((src[i + 64] & 3) << 4) | ((src[i + 96] & 3) << 6);
    }
  }
}

/** Quantizes `x` (whole super-blocks) to Q3_K. */
export function quantizeQ3_K(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK_K;
  const dst = new Uint8Array(nBlocks * Q3_K_BYTES);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * QK_K;
    const o = b * Q3_K_BYTES;
    for (let s = 0; s < 16; s++) subScales[s] = fitSymmetric(x, off + 16 * s, 16, 4);
    const dBits = quantizeSigned(subScales, 16, 32, intScales);
    writeU16(dst, o + 108, dBits);
    const d = f16BitsToF32(dBits);
    for (let s = 0; s < 16; s++) {
      const scale = fround(d * intScales[s]);
      for (let l = 0; l < 16; l++) {
        const q = scale !== 0 ? clamp(Math.round(x[off + 16 * s + l] / scale), -4, 3) : 0;
        levels[16 * s + l] = q + 4;
      }
    }
    // Bit 2 of each level goes to hmask (bit ⌊i/32⌋ of byte i mod 32), the rest to qs.
    for (let i = 0; i < QK_K; i++) {
      if (levels[i] > 3) dst[o + (i & 31)] |= 1 << (i >>> 5);
    }
    packTwoBit(levels, dst, o + 32);
    // Scale area: byte i < 8 holds the low nibbles of scales i and i + 8; byte 8 + k holds
    // the top 2 bits of scales k, k + 4, k + 8, k + 12 in bit pairs 0, 1, 2, 3.
    const s = o + 96;
    for (let i = 0; i < 16; i++) {
      const biased = intScales[i] + 32;
      if (i < 8) dst[s + i] |= biased & 0xf;
      else dst[s + i - 8] |= (biased & 0xf) << 4;
      dst[s + 8 + (i & 3)] |= (biased >>> 4) << (2 * (i >>> 2));
    }
  }
  return dst;
}

/** Writes 8 six-bit scales and mins in the Q4_K/Q5_K 12-byte layout (see {@link scaleK4}). */
function packScalesK4(scales: Int32Array, mins: Int32Array, dst: Uint8Array, s: number): void {
  for (let j = 0; j < 4; j++) {
    dst[s + j] = scales[j] | ((scales[j + 4] >>> 4) << 6);
    dst[s + j + 4] = mins[j] | ((mins[j + 4] >>> 4) << 6);
    dst[s + j + 8] = (scales[j + 4] & 0xf) | ((mins[j + 4] & 0xf) << 4);
  }
}

/**
 * Shared Q4_K/Q5_K encoder: fits 8 sub-blocks of 32 with `nmax + 1` levels, stores the
 * super-block header (d, dmin, packed scales) at `o` and the levels in `levels`.
 */
function encodeK4Header(x: Float32Array, off: number, nmax: number, dst: Uint8Array, o: number): void {
  for (let s = 0; s < 8; s++) {
    fitScaleMin(x, off + 32 * s, 32, nmax, fit);
    subScales[s] = fit.scale;
    subMins[s] = fit.min;
  }
  const dBits = quantizeNonNegative(subScales, 8, 63, intScales);
  const mBits = quantizeNonNegative(subMins, 8, 63, intMins);
  writeU16(dst, o, dBits);
  writeU16(dst, o + 2, mBits);
  packScalesK4(intScales, intMins, dst, o + 4);
  const d = f16BitsToF32(dBits);
  const dmin = f16BitsToF32(mBits);
  for (let s = 0; s < 8; s++) {
    const scale = fround(d * intScales[s]);
    const min = fround(dmin * intMins[s]);
    for (let l = 0; l < 32; l++) levels[32 * s + l] = levelAsymmetric(x[off + 32 * s + l], scale, min, nmax);
  }
}

/** Quantizes `x` (whole super-blocks) to Q4_K. */
export function quantizeQ4_K(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK_K;
  const dst = new Uint8Array(nBlocks * Q4_K_BYTES);
  for (let b = 0; b < nBlocks; b++) {
    const o = b * Q4_K_BYTES;
    encodeK4Header(x, b * QK_K, 15, dst, o);
    // Byte 32j + l: value 64j + l in the low nibble, value 64j + 32 + l in the high one.
    for (let j = 0; j < 4; j++) {
      for (let l = 0; l < 32; l++) dst[o + 16 + 32 * j + l] = levels[64 * j + l] | (levels[64 * j + 32 + l] << 4);
    }
  }
  return dst;
}

/** Quantizes `x` (whole super-blocks) to Q5_K. */
export function quantizeQ5_K(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK_K;
  const dst = new Uint8Array(nBlocks * Q5_K_BYTES);
  for (let b = 0; b < nBlocks; b++) {
    const o = b * Q5_K_BYTES;
    encodeK4Header(x, b * QK_K, 31, dst, o);
    // As Q4_K for the low nibbles; bit 4 of value 64j + l (64j + 32 + l) goes to bit 2j
    // (2j + 1) of qh[l].
    for (let j = 0; j < 4; j++) {
      for (let l = 0; l < 32; l++) {
        const lo = levels[64 * j + l];
        const hi = levels[64 * j + 32 + l];
        dst[o + 48 + 32 * j + l] = (lo & 0xf) | ((hi & 0xf) << 4);
        dst[o + 16 + l] |= ((lo >>> 4) << (2 * j)) | ((hi >>> 4) << (2 * j + 1));
      }
    }
  }
  return dst;
}

/** Quantizes `x` (whole super-blocks) to Q6_K. */
export function quantizeQ6_K(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK_K;
  const dst = new Uint8Array(nBlocks * Q6_K_BYTES);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * QK_K;
    const o = b * Q6_K_BYTES;
    for (let s = 0; s < 16; s++) subScales[s] = fitSymmetric(x, off + 16 * s, 16, 32);
    const dBits = quantizeSigned(subScales, 16, 128, intScales);
    writeU16(dst, o + 208, dBits);
    const d = f16BitsToF32(dBits);
    for (let s = 0; s < 16; s++) {
      dst[o + 192 + s] = intScales[s] & 0xff;
      const scale = fround(d * intScales[s]);
      for (let l = 0; l < 16; l++) {
        const q = scale !== 0 ? clamp(Math.round(x[off + 16 * s + l] / scale), -32, 31) : 0;
        levels[16 * s + l] = q + 32;
      }
    }
    // Half n, l < 32: ql[64n + l] holds values 128n + l (low nibble) and 128n + 64 + l
    // (high); ql[64n + 32 + l] values 128n + 32 + l and 128n + 96 + l; qh[32n + l] the
    // top 2 bits of those four values, in that order (bits 0–1, 4–5 | 2–3, 6–7).
    for (let n = 0; n < 2; n++) {
      for (let l = 0; l < 32; l++) {
        const i = 128 * n + l;
        const q0 = levels[i];
        const q1 = levels[i + 32];
        const q2 = levels[i + 64];
        const q3 = levels[i + 96];
        dst[o + 64 * n + l] = (q0 & 0xf) | ((q2 & 0xf) << 4);
        dst[o + 64 * n + 32 + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
        dst[o + 128 + 32 * n + l] = (q0 >>> 4) | ((q1 >>> 4) << 2) | ((q2 >>> 4) << 4) | ((q3 >>> 4) << 6);
      }
    }
  }
  return dst;
}
