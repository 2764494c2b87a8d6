/**
 * IEEE half (F16) and brain-float (BF16) conversions, bit-exact with GGML's scalar
 * code: f32 → f16 rounds to nearest even with subnormals, f32 → bf16 rounds to nearest
 * even and quiets NaNs (ggml-impl.h `ggml_compute_fp32_to_bf16`).
 */

// One scratch word shared by the scalar helpers: reinterpreting bits through typed
// arrays is the only exact way to do it in JavaScript.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** True on little-endian hosts, where typed-array views read GGUF's byte order directly. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The bits of `x` as an IEEE single (after rounding `x` to f32, as a Float32Array store would). */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0];
}

/** The f32 value whose bits are `bits` (an unsigned 32-bit integer). */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0];
}

/**
 * Converts `x` (first rounded to f32, since that is what GGML converts) to IEEE half
 * bits: round to nearest, ties to even; values too small for the smallest subnormal
 * (2^-24) round to ±0, values from 65520 up become ±inf, NaN becomes 0x7E00 (quiet,
 * sign kept) as in GGML's portable conversion.
 */
export function f32ToF16Bits(x: number): number {
  const u = f32Bits(x);
  const sign = (u >>> 16) & 0x8000;
  const abs = u & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00;
  if (abs >= 0x47800000) return sign | 0x7c00; // ≥ 2^16: past the largest finite half even before rounding
  if (abs < 0x38800000) {
    // Below 2^-14: a half subnormal holds round(|x| / 2^-24); 1024 there is 0x0400, the
    // smallest normal, so a carry out of the subnormal range encodes itself.
    return sign | roundHalfEven(f32FromBits(abs) * 16777216);
  }
  const mant = abs & 0x7fffff;
  let bits = (((abs >>> 23) - 112) << 10) | (mant >>> 13); // rebias exponent 127 → 15
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (bits & 1) === 1)) bits += 1; // carry may reach 0x7C00 = inf
  return sign | bits;
}

/** Rounds a non-negative number to the nearest integer, ties to even. */
function roundHalfEven(v: number): number {
  const r = Math.floor(v);
  const diff = v - r;
  if (diff > 0.5 || (diff === 0.5 && (r & 1) === 1)) return r + 1;
  return r;
}

/** The value of IEEE half bits `h` (0..0xFFFF), exactly. */
export function f16BitsToF32(h: number): number {
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  let v: number;
  if (exp === 0) v = mant * 2 ** -24;
  else if (exp === 31) v = mant === 0 ? Infinity : NaN;
  else v = (1024 + mant) * 2 ** (exp - 25);
  return (h & 0x8000) !== 0 ? -v : v;
}

let f16Table: Float32Array | undefined;

/**
 * All 65,536 half values as f32, built on first use (256 KiB): dequantizing F16
 * tensors and every block scale goes through this one lookup instead of bit twiddling.
 */
export function f16ToF32Table(): Float32Array {
  if (f16Table === undefined) {
    const table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = f16BitsToF32(h);
    f16Table = table;
  }
  return f16Table;
}

/**
 * Converts `x` (first rounded to f32) to bfloat16 bits the way GGML does: round to
 * nearest even on the dropped 16 bits, subnormals kept, NaN forced quiet (bit 6 of the
 * result set) with its sign and top payload bits kept.
 */
export function f32ToBf16Bits(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  // u + 0x8000 stays below 2^32 for every non-NaN u, so plain number arithmetic is exact.
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The value of bfloat16 bits `h`: the top half of an f32. */
export function bf16BitsToF32(h: number): number {
  return f32FromBits((h & 0xffff) << 16);
}

/** Little-endian u16 at `offset` of `bytes` (no alignment needed). */
export function readU16(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]) | ((bytes[offset + 1]) << 8);
}

/** Writes a little-endian u16 at `offset` of `bytes`. */
export function writeU16(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value & 0xff;
  bytes[offset + 1] = (value >>> 8) & 0xff;
}

/**
 * Where `data`'s bytes can be viewed as `align`-byte elements: in place when its offset
 * is aligned, else in an aligned copy (typed-array views refuse unaligned offsets).
 */
function alignedBytes(data: Uint8Array, align: number): { buffer: ArrayBufferLike; byteOffset: number } {
  if (data.byteOffset % align === 0) return { buffer: data.buffer, byteOffset: data.byteOffset };
  const copy = data.slice();
  return { buffer: copy.buffer, byteOffset: 0 };
}

/** Decodes `n` little-endian halves from `data` into `out` starting at `outOffset`. */
export function decodeF16(data: Uint8Array, n: number, out: Float32Array, outOffset: number): void {
  const table = f16ToF32Table();
  if (LITTLE_ENDIAN) {
    const { buffer, byteOffset } = alignedBytes(data, 2);
    const halves = new Uint16Array(buffer, byteOffset, n);
    for (let i = 0; i < n; i++) out[outOffset + i] = table[halves[i]];
    return;
  }
  for (let i = 0; i < n; i++) out[outOffset + i] = table[readU16(data, 2 * i)];
}

/** Decodes `n` little-endian bfloat16 values from `data` into `out` starting at `outOffset`. */
export function decodeBf16(data: Uint8Array, n: number, out: Float32Array, outOffset: number): void {
  // Writing the bits into a u32 view of `out` (always 4-aligned) avoids a float round trip per value.
  if (LITTLE_ENDIAN) {
    const { buffer, byteOffset } = alignedBytes(data, 2);
    const halves = new Uint16Array(buffer, byteOffset, n);
    const bits = new Uint32Array(out.buffer, out.byteOffset + 4 * outOffset, n);
    for (let i = 0; i < n; i++) bits[i] = (halves[i]) << 16;
    return;
  }
  for (let i = 0; i < n; i++) out[outOffset + i] = bf16BitsToF32(readU16(data, 2 * i));
}

/** Decodes `n` little-endian f32 values from `data` into `out` starting at `outOffset`. */
export function decodeF32(data: Uint8Array, n: number, out: Float32Array, outOffset: number): void {
  if (LITTLE_ENDIAN) {
    const { buffer, byteOffset } = alignedBytes(data, 4);
    out.set(new Float32Array(buffer, byteOffset, n), outOffset);
    return;
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < n; i++) out[outOffset + i] = view.getFloat32(4 * i, true);
}

/** Encodes `values` as little-endian halves. */
export function encodeF16(values: Float32Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) writeU16(out, 2 * i, f32ToF16Bits(values[i]));
  return out;
}

/** Encodes `values` as little-endian bfloat16. */
export function encodeBf16(values: Float32Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) writeU16(out, 2 * i, f32ToBf16Bits(values[i]));
  return out;
}

/** Encodes `values` as little-endian f32 (a copy). */
export function encodeF32(values: Float32Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(values.length * 4);
  if (LITTLE_ENDIAN) {
    out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    return out;
  }
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i], true);
  return out;
}
