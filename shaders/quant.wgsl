// Weight decoding shared by the matrix kernels: `dq16(r, c)` returns the 16 values of
// chunk `c` of one weight row, dequantized to f32, as 4 columns of 4 values
// (m[i][k] = value 4*i + k of the chunk).
//
// Included by a kernel that declares, before or after this file:
//   @binding(...) var<storage, read> W: array<u32>;   the weight part (src/gpu/weights.ts layout)
//   var<uniform> P: a struct whose fields include row_words, scale_word, blocks_per_row
// and defines exactly one type name: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K
// IQ4_NL IQ4_XS.
//
// Layout reminder (see weights.ts): a row's quants are `row_words` u32 words from
// row * row_words, in GGML's byte order, except that Q4_0/Q5_0/Q8_0/Q3_K/Q6_K/IQ4_NL blocks have
// their f16 scale `d` moved out to an f16 array at u32 word `scale_word`, one per block.
// A chunk is half a 32-value block, or one sixteenth of a 256-value super-block.

// Where a row starts: `body` is a u32 index into W, `scale` an f16 index into W.
struct WRow {
  body: u32,
  scale: u32,
}

fn wrow(row: u32) -> WRow {
  return WRow(row * P.row_words, P.scale_word * 2u + row * P.blocks_per_row);
}

// f16 number `i` of W (two per word, the lower half first as in little-endian bytes).
fn f16_at(i: u32) -> f32 {
  return unpack2x16float(W[i >> 1u])[i & 1u];
}

// Byte `b` counted from word `word0`.
fn byte_at(word0: u32, b: u32) -> u32 {
  return (W[word0 + (b >> 2u)] >> ((b & 3u) * 8u)) & 0xFFu;
}

// The 4-bit fields at bit `shift` of each byte of `w`.
fn nibs(w: u32, shift: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(0xFu));
}

// The 2-bit fields at bit `shift` of each byte of `w`.
fn bits2(w: u32, shift: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(3u));
}

// Bit `shift + k` of `w` for k = 0..3 (Q5_0/Q5_1 high bits: one bit per value, in value order).
fn bits_seq(w: u32, shift: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(w) >> (vec4<u32>(0u, 1u, 2u, 3u) + shift)) & vec4<u32>(1u));
}

// The 4 signed bytes of `w`.
fn i8x4(w: u32) -> vec4<f32> {
  return vec4<f32>((vec4<i32>(bitcast<i32>(w)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// K-quant 6-bit scale and min number `j` (0..7) of the 12 scale bytes at word `base`.
fn scale_min_k4(base: u32, j: u32) -> vec2<f32> {
  if (j < 4u) {
    return vec2<f32>(f32(byte_at(base, j) & 63u), f32(byte_at(base, j + 4u) & 63u));
  }
  let a = byte_at(base, j + 4u);
  let sc = (a & 0xFu) | ((byte_at(base, j - 4u) >> 6u) << 4u);
  let mn = (a >> 4u) | ((byte_at(base, j) >> 6u) << 4u);
  return vec2<f32>(f32(sc), f32(mn));
}

#if F32
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let b = r.body + c * 16u;
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    let o = b + 4u * i;
    m[i] = bitcast<vec4<f32>>(vec4<u32>(W[o], W[o + 1u], W[o + 2u], W[o + 3u]));
  }
  return m;
}
#elif F16
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let b = r.body + c * 8u;
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = vec4<f32>(unpack2x16float(W[b + 2u * i]), unpack2x16float(W[b + 2u * i + 1u]));
  }
  return m;
}
#elif BF16
fn bf16x2(w: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xFFFF0000u));
}
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let b = r.body + c * 8u;
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = vec4<f32>(bf16x2(W[b + 2u * i]), bf16x2(W[b + 2u * i + 1u]));
  }
  return m;
}
#elif Q4_0
// Block: qs[16] (split-scale). Value j < 16: low nibble of byte j; j >= 16: high nibble of byte j-16.
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 1u;
  let shift = (c & 1u) * 4u;
  let q0 = r.body + blk * 4u;
  let d = f16_at(r.scale + blk);
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = (nibs(W[q0 + i], shift) - 8.0) * d;
  }
  return m;
}
#elif Q4_1
// Block: d, m (f16), qs[16]. Value = d * q + m.
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 1u;
  let shift = (c & 1u) * 4u;
  let q0 = r.body + blk * 5u;
  let dm = unpack2x16float(W[q0]);
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = nibs(W[q0 + 1u + i], shift) * dm.x + dm.y;
  }
  return m;
}
#elif Q5_0
// Block: qh (32 high bits, bit j for value j), qs[16] (split-scale). Value = d * (q - 16).
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 1u;
  let h = c & 1u;
  let q0 = r.body + blk * 5u;
  let qh = W[q0];
  let d = f16_at(r.scale + blk);
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = (nibs(W[q0 + 1u + i], h * 4u) + 16.0 * bits_seq(qh, h * 16u + 4u * i) - 16.0) * d;
  }
  return m;
}
#elif Q5_1
// Block: d, m (f16), qh, qs[16]. Value = d * q + m.
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 1u;
  let h = c & 1u;
  let q0 = r.body + blk * 6u;
  let dm = unpack2x16float(W[q0]);
  let qh = W[q0 + 1u];
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = (nibs(W[q0 + 2u + i], h * 4u) + 16.0 * bits_seq(qh, h * 16u + 4u * i)) * dm.x + dm.y;
  }
  return m;
}
#elif Q8_0
// Block: qs[32] signed bytes (split-scale). Value = d * q.
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 1u;
  let q0 = r.body + blk * 8u + (c & 1u) * 4u;
  let d = f16_at(r.scale + blk);
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = i8x4(W[q0 + i]) * d;
  }
  return m;
}
#elif Q2_K
// Super-block (21 words): scales[16] (low nibble scale, high nibble min), qs[64] (2 bits), d, dmin.
// Value v = 128n + 32j + l: bits 2j of qs[32n + l], scale byte 8n + 2j + l/16.
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 4u;
  let n = (c >> 3u) & 1u;
  let j = (c >> 1u) & 3u;
  let hh = c & 1u;
  let q0 = r.body + blk * 21u;
  let dm = unpack2x16float(W[q0 + 20u]);
  let sc = byte_at(q0, 8u * n + 2u * j + hh);
  let dl = dm.x * f32(sc & 0xFu);
  let ml = dm.y * f32(sc >> 4u);
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = bits2(W[q0 + 4u + 8u * n + 4u * hh + i], 2u * j) * dl - ml;
  }
  return m;
}
#elif Q3_K
// Super-block (27 words, split-scale): hmask[32], qs[64] (2 bits), scales[12] (16 packed 6-bit).
// Value v = 128n + 32j + l: q = bits 2j of qs[32n + l], minus 4 unless bit 4n + j of hmask[l].
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 4u;
  let n = (c >> 3u) & 1u;
  let j = (c >> 1u) & 3u;
  let hh = c & 1u;
  let q0 = r.body + blk * 27u;
  let is = 8u * n + 2u * j + hh;
  let low4 = (byte_at(q0 + 24u, is & 7u) >> (4u * (is >> 3u))) & 0xFu;
  let high2 = (byte_at(q0 + 24u, 8u + (is & 3u)) >> (2u * (is >> 2u))) & 3u;
  let dl = f16_at(r.scale + blk) * (f32(low4 | (high2 << 4u)) - 32.0);
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    let q = bits2(W[q0 + 8u + 8u * n + 4u * hh + i], 2u * j);
    let hb = vec4<f32>((vec4<u32>(W[q0 + 4u * hh + i]) >> (vec4<u32>(0u, 8u, 16u, 24u) + 4u * n + j)) & vec4<u32>(1u));
    m[i] = (q - 4.0 + 4.0 * hb) * dl;
  }
  return m;
}
#elif Q4_K
// Super-block (36 words): d, dmin, scales[12], qs[128]. Sub-block s (32 values): nibble
// (s odd: high) of qs[32 * (s / 2) + l]; value = d * sc * q - dmin * min.
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 4u;
  let s = (c >> 1u) & 7u;
  let hh = c & 1u;
  let q0 = r.body + blk * 36u;
  let dm = unpack2x16float(W[q0]);
  let sm = scale_min_k4(q0 + 1u, s);
  let scale = dm.x * sm.x;
  let mn = dm.y * sm.y;
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = nibs(W[q0 + 4u + 8u * (s >> 1u) + 4u * hh + i], 4u * (s & 1u)) * scale - mn;
  }
  return m;
}
#elif Q5_K
// Super-block (44 words): d, dmin, scales[12], qh[32], qs[128]. As Q4_K, plus 16 * bit s of qh[l].
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 4u;
  let s = (c >> 1u) & 7u;
  let hh = c & 1u;
  let q0 = r.body + blk * 44u;
  let dm = unpack2x16float(W[q0]);
  let sm = scale_min_k4(q0 + 1u, s);
  let scale = dm.x * sm.x;
  let mn = dm.y * sm.y;
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    let q = nibs(W[q0 + 12u + 8u * (s >> 1u) + 4u * hh + i], 4u * (s & 1u));
    let hb = vec4<f32>((vec4<u32>(W[q0 + 4u + 4u * hh + i]) >> (vec4<u32>(0u, 8u, 16u, 24u) + s)) & vec4<u32>(1u));
    m[i] = (q + 16.0 * hb) * scale - mn;
  }
  return m;
}
#elif Q6_K
// Super-block (52 words, split-scale): ql[128], qh[64], scales[16] (int8).
// Value v = 128n + 32q + l: low 4 bits from ql[64n + 32(q & 1) + l] (q >= 2: high nibble),
// high 2 bits at bit 2q of qh[32n + l]; scale 8n + 2q + l/16; value = d * sc * (q6 - 32).
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 4u;
  let n = (c >> 3u) & 1u;
  let q = (c >> 1u) & 3u;
  let hh = c & 1u;
  let q0 = r.body + blk * 52u;
  let sc = f32((bitcast<i32>(byte_at(q0 + 48u, 8u * n + 2u * q + hh) << 24u)) >> 24u);
  let scale = f16_at(r.scale + blk) * sc;
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    let lo = nibs(W[q0 + 16u * n + 8u * (q & 1u) + 4u * hh + i], 4u * (q >> 1u));
    let hi = bits2(W[q0 + 32u + 8u * n + 4u * hh + i], 2u * q);
    m[i] = (lo + 16.0 * hi - 32.0) * scale;
  }
  return m;
}
#elif IQ4_NL || IQ4_XS
// The 16 levels a 4-bit index selects (GGML's kvalues_iq4nl: -127 -104 -83 -65 -49 -35 -22
// -10 1 13 25 38 53 69 89 113) as 4 words of 4 signed bytes: level q is byte q % 4 of word
// q / 4. Picked with selects and shifts rather than a run-time index into a const array,
// which ran matvecs 2x slower on lavapipe (an indexed load per value).
const IQ4_WORDS = vec4<u32>(0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u);

// The levels of the 4-bit fields at bit `shift` of each byte of `w`.
fn iq4_levels(w: u32, shift: u32) -> vec4<f32> {
  let q = (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(0xFu);
  let b4 = (q & vec4<u32>(4u)) != vec4<u32>(0u);
  let b8 = (q & vec4<u32>(8u)) != vec4<u32>(0u);
  let word = select(select(vec4<u32>(IQ4_WORDS.x), vec4<u32>(IQ4_WORDS.y), b4), select(vec4<u32>(IQ4_WORDS.z), vec4<u32>(IQ4_WORDS.w), b4), b8);
  // Byte q % 4 moved to the top, then sign-extended down.
  return vec4<f32>(bitcast<vec4<i32>>(word << ((vec4<u32>(3u) - (q & vec4<u32>(3u))) * 8u)) >> vec4<u32>(24u));
}
#if IQ4_NL
// Block: qs[16] (split-scale), Q4_0's nibble order. Value = d * K[q].
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 1u;
  let shift = (c & 1u) * 4u;
  let q0 = r.body + blk * 4u;
  let d = f16_at(r.scale + blk);
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = iq4_levels(W[q0 + i], shift) * d;
  }
  return m;
}
#else
// Super-block (34 words): d, scales_h (f16 slot, u16), scales_l[4], qs[128]. Sub-block s
// (32 values): 6-bit ls = nibble s%2 of scales_l[s/2] | bits 2s of scales_h << 4, nibbles
// in qs[16s..16s+16) as IQ4_NL; value = d * (ls - 32) * K[q].
fn dq16(r: WRow, c: u32) -> mat4x4<f32> {
  let blk = c >> 4u;
  let s = (c >> 1u) & 7u;
  let hh = c & 1u;
  let q0 = r.body + blk * 34u;
  let head = W[q0];
  let d = unpack2x16float(head).x;
  let ls = ((byte_at(q0 + 1u, s >> 1u) >> (4u * (s & 1u))) & 0xFu) | (((head >> (16u + 2u * s)) & 3u) << 4u);
  let dl = d * (f32(ls) - 32.0);
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
    m[i] = iq4_levels(W[q0 + 2u + 4u * s + i], 4u * hh) * dl;
  }
  return m;
}
#endif
#endif
