/**
 * GGML's 4-bit non-linear formats, IQ4_NL and IQ4_XS (ggml-common.h), little-endian.
 * Both store 4-bit indices into one fixed table of 16 signed levels ({@link IQ4_LEVELS},
 * GGML's `kvalues_iq4nl`), spaced closer near zero where weights cluster:
 *
 * - IQ4_NL (18 B per 32 values): d:f16, qs[16]. x[j] = d·K[lo4(qs[j])],
 *   x[j+16] = d·K[hi4(qs[j])] (Q4_0's nibble order, with a table instead of q − 8).
 * - IQ4_XS (136 B per 256 values): d:f16, scales_h:u16, scales_l[4], qs[128]. Eight
 *   sub-blocks of 32, each with a 6-bit scale ls = low nibble (sub-block s: nibble s%2 of
 *   scales_l[s/2]) | 2 bits (bits 2s, 2s+1 of scales_h) << 4; x = d·(ls − 32)·K[q], with
 *   sub-block s's nibbles in qs[16s .. 16s+16) as in IQ4_NL.
 *
 * Dequantization matches GGML's CPU code bit for bit: d·(ls − 32) and d·K[q] are exact in
 * f32 (an 11-bit f16 significand times at most 6 bits, then times 7 bits), so the one
 * rounding on store equals C's float arithmetic.
 *
 * The encoder follows GGML's `quantize_row_iq4_nl_impl` as `llama-quantize` calls it
 * without an importance matrix (weights x², 7 trial scales either side of the first
 * guess), in f32 arithmetic (`Math.fround` after each operation, as C does with floats).
 */
import { QK_K } from "../ggml-type.ts";
import { f32ToF16Bits, readU16, writeU16 } from "./float.ts";

const fround = Math.fround;

/** The 16 levels a 4-bit index selects (GGML's `kvalues_iq4nl`), ascending. */
export const IQ4_LEVELS: readonly number[] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
const LEVELS = Int8Array.from(IQ4_LEVELS);

/** Values per IQ4_NL block and per IQ4_XS sub-block. */
const SUB = 32;
const IQ4_NL_BYTES = 2 + SUB / 2;
const IQ4_XS_BYTES = 2 + 2 + QK_K / 64 + QK_K / 2;
/** Trial scales either side of the first guess (GGML's `ntry` for file quantization). */
const TRIES = 7;
/** Sub-blocks whose largest magnitude is below this get scale 0 (GGML's GROUP_MAX_EPS). */
const GROUP_MAX_EPS = fround(1e-15);

/** Dequantizes `nBlocks` IQ4_NL blocks from `src` into `out` at `outOffset`. */
export function dequantizeIQ4_NL(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * IQ4_NL_BYTES;
    decodeSubBlock(src, o + 2, f16[readU16(src, o)], out, outOffset + b * SUB);
  }
}

/** Dequantizes `nBlocks` IQ4_XS super-blocks from `src` into `out` at `outOffset`. */
export function dequantizeIQ4_XS(src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * IQ4_XS_BYTES;
    const d = f16[readU16(src, o)];
    const scalesH = readU16(src, o + 2);
    for (let s = 0; s < QK_K / SUB; s++) {
      const ls = ((src[o + 4 + (s >> 1)] >>> (4 * (s & 1))) & 0xf) | (((scalesH >>> (2 * s)) & 3) << 4);
      decodeSubBlock(src, o + 8 + 16 * s, fround(d * (ls - 32)), out, outOffset + b * QK_K + s * SUB);
    }
  }
}

/** 32 values from the 16 nibble bytes at `qs`, each level times `scale`. */
function decodeSubBlock(src: Uint8Array, qs: number, scale: number, out: Float32Array, y: number): void {
  for (let j = 0; j < 16; j++) {
    const q = src[qs + j];
    out[y + j] = scale * LEVELS[q & 0xf];
    out[y + j + 16] = scale * LEVELS[q >>> 4];
  }
}

/** Encodes `x` (a multiple of 32 values) as IQ4_NL. */
export function quantizeIQ4_NL(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / SUB;
  const out = new Uint8Array(nBlocks * IQ4_NL_BYTES);
  const indices = new Uint8Array(SUB);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * SUB;
    const o = b * IQ4_NL_BYTES;
    const scale = fitSubBlock(x, off);
    writeU16(out, o, f32ToF16Bits(scale));
    // Re-pick every index for the final scale (GGML does so whenever it searched).
    const inv = scale !== 0 ? fround(1 / scale) : 0;
    for (let j = 0; j < SUB; j++) indices[j] = nearestLevel(fround(inv * x[off + j]));
    packNibbles(indices, 0, out, o + 2);
  }
  return out;
}

/** Encodes `x` (a multiple of 256 values) as IQ4_XS. */
export function quantizeIQ4_XS(x: Float32Array): Uint8Array<ArrayBuffer> {
  const nBlocks = x.length / QK_K;
  const out = new Uint8Array(nBlocks * IQ4_XS_BYTES);
  const indices = new Uint8Array(QK_K);
  const scales = new Float32Array(QK_K / SUB);
  for (let b = 0; b < nBlocks; b++) {
    const off = b * QK_K;
    const o = b * IQ4_XS_BYTES;
    // Best f32 scale per sub-block; the super-block scale makes the largest one −32·d.
    let maxScale = 0;
    let amaxScale = 0;
    for (let s = 0; s < QK_K / SUB; s++) {
      scales[s] = fitSubBlock(x, off + s * SUB);
      if (Math.abs(scales[s]) > amaxScale) {
        amaxScale = Math.abs(scales[s]);
        maxScale = scales[s];
      }
    }
    const d = fround(-maxScale / 32);
    writeU16(out, o, f32ToF16Bits(d));
    const inv = d !== 0 ? fround(1 / d) : 0;
    let scalesH = 0;
    for (let s = 0; s < QK_K / SUB; s++) {
      const l = Math.max(-32, Math.min(31, nearestInt(fround(inv * scales[s]))));
      const dl = fround(d * l);
      const invL = dl !== 0 ? fround(1 / dl) : 0;
      for (let j = 0; j < SUB; j++) indices[s * SUB + j] = nearestLevel(fround(invL * x[off + s * SUB + j]));
      const biased = l + 32;
      out[o + 4 + (s >> 1)] |= (biased & 0xf) << (4 * (s & 1));
      scalesH |= (biased >>> 4) << (2 * s);
    }
    writeU16(out, o + 2, scalesH);
    for (let s = 0; s < QK_K / SUB; s++) packNibbles(indices, s * SUB, out, o + 8 + 16 * s);
  }
  return out;
}

/**
 * The f32 scale of the 32 values at `x[off..]` that minimizes Σ x²·(x − scale·K[q])²
 * over GGML's trial scales; 0 for a sub-block of (near) zeros. The caller picks the
 * indices for the scale it finally stores.
 */
function fitSubBlock(x: Float32Array, off: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < SUB; j++) {
    const ax = Math.abs(x[off + j]);
    if (ax > amax) {
      amax = ax;
      max = x[off + j];
    }
  }
  if (amax < GROUP_MAX_EPS) return 0;
  // First guess: the largest value on the table's most negative level (its widest end).
  let [sumqx, sumq2] = weightedSums(x, off, fround(1 / fround(-max / LEVELS[0])));
  let d = sumq2 > 0 ? fround(sumqx / sumq2) : 0;
  let best = fround(d * sumqx);
  for (let t = -TRIES; t <= TRIES; t++) {
    [sumqx, sumq2] = weightedSums(x, off, fround((t + LEVELS[0]) / max));
    // sumqx²/sumq2 is the error reduction of this trial's least-squares scale.
    if (sumq2 > 0 && fround(sumqx * sumqx) > fround(best * sumq2)) {
      d = fround(sumqx / sumq2);
      best = fround(d * sumqx);
    }
  }
  return d;
}

/**
 * For the inverse scale `inv`: Σ w·q·x and Σ w·q² over the sub-block at `x[off..]`, with
 * q the level nearest inv·x and weight w = x², summed in f32 in GGML's order.
 */
function weightedSums(x: Float32Array, off: number, inv: number): [number, number] {
  let sumqx = 0;
  let sumq2 = 0;
  for (let j = 0; j < SUB; j++) {
    const xj = x[off + j];
    const q = LEVELS[nearestLevel(fround(inv * xj))];
    const wq = fround(fround(xj * xj) * q);
    sumqx = fround(sumqx + fround(wq * xj));
    sumq2 = fround(sumq2 + fround(wq * q));
  }
  return [sumqx, sumq2];
}

/** Index of the level nearest to `v` (ties to the upper level), as GGML's `best_index_int8`. */
function nearestLevel(v: number): number {
  if (v <= LEVELS[0]) return 0;
  if (v >= LEVELS[15]) return 15;
  let lo = 0;
  let hi = 15;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (v < LEVELS[mid]) hi = mid;
    else lo = mid;
  }
  // Both distances are f32 differences in C; rounding them can turn a near-tie into a tie.
  return fround(v - LEVELS[hi - 1]) < fround(LEVELS[hi] - v) ? hi - 1 : hi;
}

/** GGML's `nearest_int`: rounds an f32 to the nearest integer, ties to even. */
function nearestInt(v: number): number {
  // Adding 1.5·2²³ in f32 leaves a unit in the last place of 1, so the sum is v rounded.
  return fround(v + 12582912) - 12582912;
}

/** Packs 32 indices from `indices[at..]` into 16 bytes: value j low nibble, j + 16 high. */
function packNibbles(indices: Uint8Array, at: number, out: Uint8Array, o: number): void {
  for (let j = 0; j < 16; j++) out[o + j] = indices[at + j] | (indices[at + 16 + j] << 4);
}
