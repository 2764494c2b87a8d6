// Single-row matrix-vector products shaped for GPUs, in whole quant blocks:
//   Y[y_offset + row] = sum_k W[row, k] * X[x_offset + k] (+ B[bias_offset + row]).
// Same parameters and bindings 0, 2–5 as matvec.wgsl (binding 1 is not read; n, x_stride,
// y_stride are ignored: one input row).
//
// Defines: one type name of F16 Q4_0 Q5_0 Q8_0 Q4_K Q6_K, WG (threads, a power of two ≥
// ROWS), ROWS (rows per work-group), BIAS, SUBGROUPS (reduce with subgroupAdd; any size).
// Requires: P.x_vec4 = 1 (x_offset a multiple of 4), and cols a multiple of 64 (F16, Q4_0,
// Q8_0), 128 (Q5_0: its 5-word blocks then make whole vec4s per row) or 256 (K types).
//
// Shape: a work-group holds ROWS rows; its threads walk the rows' 64-value "units" with
// stride WG (cols / 64 units per row). Per unit a thread loads the unit's 64 inputs once
// (16 vec4 loads) and applies them to each of its ROWS rows, reading each row's quants as
// whole vec4<u32> (16 bytes per load, adjacent threads on adjacent units) and decoding
// each block's scales once per unit, not once per 16 values as matvec.wgsl does.
//
// Decoding without int-to-float conversions: on NVIDIA GPUs a conversion issues at a
// quarter (or less) of the rate of a float add, and Q4_K at full bandwidth needs ~20
// values per SM per clock, beyond what conversions give. Instead a small unsigned field
// f < 2^7 placed in byte k of a word is masked in place (no shift for bytes 0–2) and ORed
// into the bits of 2^23: bitcast gives exactly 2^23 + f * 2^(8k), and subtracting
// (2^23 + offset * 2^(8k)) gives (f - offset) * 2^(8k) exactly (all integers below 2^24).
// Each byte lane stays in its own component of a vec4 accumulator, so the 2^(8k) scales
// come out in one dot with their inverses per block. Every step is exact, as with
// conversions: the sums round as matvec.wgsl's do (no x-sum cancellation tricks, except
// Q4_K's mins, which the format defines on the sums of x).
#if SUBGROUPS
enable subgroups;
#endif

#include "matvec-params.wgsl"

const WG: u32 = {{WG}}u;
const R: u32 = {{ROWS}}u;

// The weight part as 16-byte words (parts are padded to 16 bytes, weights.ts).
@group(0) @binding(0) var<storage, read> W4: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> X4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
#if BIAS
@group(0) @binding(4) var<storage, read> B: array<f32>;
#endif

const MAGIC: u32 = 0x4B000000u;   // the bits of 2^23
const TWO23: f32 = 8388608.0;
// Byte lanes of fields below 2^7 (see lanes7): lane scales and their inverses.
const LINV7 = vec4<f32>(1.0, 0.00390625, 0.0000152587890625, 0.0000152587890625);
// Byte lanes of whole bytes (see lanes8).
const LINV8 = vec4<f32>(1.0, 0.00390625, 0.00390625, 0.00390625);

// Fields `w & m` of each byte of w (m < 0x80) as 2^23 + f_k * (1, 2^8, 2^16, 2^16)_k: byte 3
// is first shifted down one byte, so that f * 2^24 stays inside the mantissa.
fn lanes7(w: u32, m: u32) -> vec4<f32> {
  return bitcast<vec4<f32>>((vec4<u32>(w, w, w, w >> 8u) & vec4<u32>(m, m << 8u, m << 16u, m << 16u)) | vec4<u32>(MAGIC));
}
// The 4 bytes of w as 2^23 + b_k * (1, 2^8, 2^8, 2^8)_k.
fn lanes8(w: u32) -> vec4<f32> {
  return bitcast<vec4<f32>>((vec4<u32>(w, w, w >> 8u, w >> 16u) & vec4<u32>(0xFFu, 0xFF00u, 0xFF00u, 0xFF00u)) | vec4<u32>(MAGIC));
}
// What to subtract from lanes7 / lanes8 for f - off.
fn off7(off: f32) -> vec4<f32> {
  return vec4<f32>(TWO23) + off * vec4<f32>(1.0, 256.0, 65536.0, 65536.0);
}
fn off8(off: f32) -> vec4<f32> {
  return vec4<f32>(TWO23) + off * vec4<f32>(1.0, 256.0, 256.0, 256.0);
}

// 32-bit word `i` of W.
fn w_word(i: u32) -> u32 {
  return W4[i >> 2u][i & 3u];
}

// The 64 inputs of unit u (contiguous), as 16 vec4s.
fn load_x(x: ptr<function, array<vec4<f32>, 16>>, u: u32) {
  let q = (P.x_offset >> 2u) + u * 16u;
  for (var i = 0u; i < 16u; i++) {
    (*x)[i] = X4[q + i];
  }
}

#if F16
// Unit: 64 halves = 8 vec4s.
fn unit(acc: ptr<function, array<f32, R>>, rows: array<u32, R>, u: u32) {
  var x: array<vec4<f32>, 16>;
  load_x(&x, u);
  for (var r = 0u; r < R; r++) {
    let v = rows[r] * (P.row_words >> 2u) + u * 8u;
    var a = vec4<f32>(0.0);
    for (var j = 0u; j < 8u; j++) {
      let q = W4[v + j];
      a = fma(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), x[2u * j], a);
      a = fma(vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)), x[2u * j + 1u], a);
    }
    (*acc)[r] += (a.x + a.y) + (a.z + a.w);
  }
}
#elif Q4_0
// Unit: blocks 2u, 2u + 1 (one vec4 of 32 nibbles each: byte j holds values j and j + 16),
// their two f16 scales in one word (blocks_per_row is even).
fn unit(acc: ptr<function, array<f32, R>>, rows: array<u32, R>, u: u32) {
  var x: array<vec4<f32>, 16>;
  load_x(&x, u);
  let c = off7(8.0);
  for (var r = 0u; r < R; r++) {
    let v = rows[r] * (P.row_words >> 2u) + 2u * u;
    let d = unpack2x16float(w_word(P.scale_word + ((rows[r] * P.blocks_per_row) >> 1u) + u));
    var s = 0.0;
    for (var h = 0u; h < 2u; h++) {
      let q = W4[v + h];
      var a = vec4<f32>(0.0);
      for (var i = 0u; i < 4u; i++) {
        a = fma(lanes7(q[i], 0xFu) - c, x[8u * h + i], a);
        a = fma(lanes7(q[i] >> 4u, 0xFu) - c, x[8u * h + 4u + i], a);
      }
      s += d[h] * dot(a, LINV7);
    }
    (*acc)[r] += s;
  }
}
#elif Q8_0
// Unit: blocks 2u, 2u + 1 (two vec4s of 32 signed bytes each), two f16 scales in one word.
fn unit(acc: ptr<function, array<f32, R>>, rows: array<u32, R>, u: u32) {
  var x: array<vec4<f32>, 16>;
  load_x(&x, u);
  // Signed bytes q as q + 128 (flip the sign bits), then subtract 128.
  let c = off8(128.0);
  for (var r = 0u; r < R; r++) {
    let v = rows[r] * (P.row_words >> 2u) + 4u * u;
    let d = unpack2x16float(w_word(P.scale_word + ((rows[r] * P.blocks_per_row) >> 1u) + u));
    var s = 0.0;
    for (var h = 0u; h < 2u; h++) {
      var a = vec4<f32>(0.0);
      for (var j = 0u; j < 2u; j++) {
        let q = W4[v + 2u * h + j] ^ vec4<u32>(0x80808080u);
        for (var i = 0u; i < 4u; i++) {
          a = fma(lanes8(q[i]) - c, x[8u * h + 4u * j + i], a);
        }
      }
      s += d[h] * dot(a, LINV8);
    }
    (*acc)[r] += s;
  }
}
#elif Q5_0
// Bit 4 of each byte: bits s..s+3 of qh spread one per byte (the multiply places bit i of
// the nibble at bit 4 + 8i; its 4 shifted copies never overlap, so nothing carries).
fn q5_high(qh: u32, s: u32) -> u32 {
  return (((qh >> s) & 0xFu) * 0x02040810u) & 0x10101010u;
}
// Sum of (q - 16) * x over one block (qh, qs: value j < 16 in the low nibble of byte j,
// j >= 16 in the high nibble of byte j - 16, bit 4 from bit j of qh), x vec4s i0..i0+8.
fn q5_block(qh: u32, qs: vec4<u32>, x: ptr<function, array<vec4<f32>, 16>>, i0: u32) -> f32 {
  let c = off7(16.0);
  var a = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    let lo = (qs[i] & 0x0F0F0F0Fu) | q5_high(qh, 4u * i);
    let hi = ((qs[i] >> 4u) & 0x0F0F0F0Fu) | q5_high(qh, 16u + 4u * i);
    a = fma(lanes7(lo, 0xFFu) - c, (*x)[i0 + i], a);
    a = fma(lanes7(hi, 0xFFu) - c, (*x)[i0 + 4u + i], a);
  }
  return dot(a, LINV7);
}
// Unit: blocks 2u, 2u + 1, 10 words from word 10u of the row: 3 vec4s from (5u) / 2, the
// first word at .x (u even) or .z (u odd). Rows are whole vec4s (blocks_per_row % 4 == 0).
fn unit(acc: ptr<function, array<f32, R>>, rows: array<u32, R>, u: u32) {
  var x: array<vec4<f32>, 16>;
  load_x(&x, u);
  let odd = (u & 1u) == 1u;
  for (var r = 0u; r < R; r++) {
    let v = rows[r] * (P.row_words >> 2u) + ((5u * u) >> 1u);
    let a = W4[v];
    let b = W4[v + 1u];
    let e = W4[v + 2u];
    // select, not a branch: u's parity alternates between neighbouring threads.
    let qh0 = select(a.x, a.z, odd);
    let qs0 = select(vec4<u32>(a.yzw, b.x), vec4<u32>(a.w, b.xyz), odd);
    let qh1 = select(b.y, b.w, odd);
    let qs1 = select(vec4<u32>(b.zw, e.xy), e, odd);
    let d = unpack2x16float(w_word(P.scale_word + ((rows[r] * P.blocks_per_row) >> 1u) + u));
    (*acc)[r] += d.x * q5_block(qh0, qs0, &x, 0u) + d.y * q5_block(qh1, qs1, &x, 8u);
  }
}
#elif Q4_K
// Unit: quarter p = u % 4 of super-block u / 4 (36 words = 9 vec4s: d, dmin, scales[12] |
// qs[128]): sub-blocks 2p (low nibbles of qs bytes 32p..32p+31, vec4s 1 + 2p and 2 + 2p)
// and 2p + 1 (their high nibbles). value = d * sc * q - dmin * mn.
fn unit(acc: ptr<function, array<f32, R>>, rows: array<u32, R>, u: u32) {
  var x: array<vec4<f32>, 16>;
  load_x(&x, u);
  // The mins apply to the sums of x of each sub-block (shared by the R rows).
  var s0 = vec4<f32>(0.0);
  var s1 = vec4<f32>(0.0);
  for (var i = 0u; i < 8u; i++) {
    s0 += x[i];
    s1 += x[8u + i];
  }
  let sx = vec2<f32>(dot(s0, vec4<f32>(1.0)), dot(s1, vec4<f32>(1.0)));
  let sb = u >> 2u;
  let p = u & 3u;
  let sh = 16u * (p & 1u);   // sub-blocks 2p, 2p + 1 are bytes 2(p & 1), +1 of the words below
  for (var r = 0u; r < R; r++) {
    let v = rows[r] * (P.row_words >> 2u) + sb * 9u;
    let h = W4[v];
    let qa = W4[v + 1u + 2u * p];
    let qb = W4[v + 2u + 2u * p];
    // 6-bit scales and mins (GGML's get_scale_min_k4), 4 sub-blocks per word.
    var scw: u32;
    var mnw: u32;
    if (p < 2u) {
      scw = h.y & 0x3F3F3F3Fu;
      mnw = h.z & 0x3F3F3F3Fu;
    } else {
      scw = (h.w & 0x0F0F0F0Fu) | ((h.y >> 2u) & 0x30303030u);
      mnw = ((h.w >> 4u) & 0x0F0F0F0Fu) | ((h.z >> 2u) & 0x30303030u);
    }
    let sc = vec2<f32>(f32((scw >> sh) & 0x3Fu), f32((scw >> (sh + 8u)) & 0x3Fu));
    let mn = vec2<f32>(f32((mnw >> sh) & 0x3Fu), f32((mnw >> (sh + 8u)) & 0x3Fu));
    let dm = unpack2x16float(h.x);
    let c = vec4<f32>(TWO23);
    var al = vec4<f32>(0.0);
    var ah = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
      al = fma(lanes7(qa[i], 0xFu) - c, x[i], al);
      ah = fma(lanes7(qa[i] >> 4u, 0xFu) - c, x[8u + i], ah);
      al = fma(lanes7(qb[i], 0xFu) - c, x[4u + i], al);
      ah = fma(lanes7(qb[i] >> 4u, 0xFu) - c, x[12u + i], ah);
    }
    (*acc)[r] += dm.x * (sc.x * dot(al, LINV7) + sc.y * dot(ah, LINV7)) - dm.y * dot(mn, sx);
  }
}
#elif Q6_K
// Super-block (52 words = 13 vec4s, split-scale): ql[128] (vec4s 0-7), qh[64] (8-11),
// scales[16] int8 (12). Value v = 128n + 32q + l: low 4 bits from ql[64n + 32(q & 1) + l]
// (q >= 2: high nibble), high 2 bits at bit 2q of qh[32n + l]; scale 8n + 2q + l / 16;
// value = d * sc * (q6 - 32).
// Unit (n, h) = (u / 2 % 2, u % 2) of super-block u / 4: l = 16h..16h+15 of half n for the
// 4 values of q: ql vec4s 4n + h (q = 0, 2) and 4n + 2 + h (q = 1, 3), qh vec4 8 + 2n + h.
// Its inputs are 4 runs of 16, at 128n + 32q + 16h.
fn q6_seg(ql: vec4<u32>, hq: vec4<u32>, x: ptr<function, array<vec4<f32>, 16>>, i0: u32) -> f32 {
  let c = off7(32.0);
  var a = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    a = fma(lanes7((ql[i] & 0x0F0F0F0Fu) | (hq[i] & 0x30303030u), 0xFFu) - c, (*x)[i0 + i], a);
  }
  return dot(a, LINV7);
}
// Signed byte b of w.
fn s8(w: u32, b: u32) -> f32 {
  return f32(bitcast<i32>(w << (24u - 8u * b)) >> 24u);
}
fn unit(acc: ptr<function, array<f32, R>>, rows: array<u32, R>, u: u32) {
  let sb = u >> 2u;
  let n = (u >> 1u) & 1u;
  let h = u & 1u;
  var x: array<vec4<f32>, 16>;
  let xq = (P.x_offset >> 2u) + sb * 64u + 32u * n + 4u * h;
  for (var q = 0u; q < 4u; q++) {
    for (var i = 0u; i < 4u; i++) {
      x[4u * q + i] = X4[xq + 8u * q + i];
    }
  }
  for (var r = 0u; r < R; r++) {
    let v = rows[r] * (P.row_words >> 2u) + sb * 13u;
    let qa = W4[v + 4u * n + h];
    let qb = W4[v + 4u * n + 2u + h];
    let hq = W4[v + 8u + 2u * n + h];
    let sw = W4[v + 12u];
    // Scales 8n + 2q + h: bytes h, 2 + h of word 2n (q = 0, 1) and 2n + 1 (q = 2, 3).
    let s01 = select(sw.x, sw.z, n == 1u);
    let s23 = select(sw.y, sw.w, n == 1u);
    let fi = P.scale_word * 2u + rows[r] * P.blocks_per_row + sb;
    let d = unpack2x16float(w_word(fi >> 1u))[fi & 1u];
    let sum = s8(s01, h) * q6_seg(qa, hq << vec4<u32>(4u), &x, 0u) +
      s8(s01, 2u + h) * q6_seg(qb, hq << vec4<u32>(2u), &x, 4u) +
      s8(s23, h) * q6_seg(qa >> vec4<u32>(4u), hq, &x, 8u) +
      s8(s23, 2u + h) * q6_seg(qb >> vec4<u32>(4u), hq >> vec4<u32>(2u), &x, 12u);
    (*acc)[r] += d * sum;
  }
}
#endif

// Work-group sums: with subgroups, one slot per subgroup (claimed with an atomic, so
// nothing depends on the subgroup size or on how invocations map to subgroups); without,
// a tree over WG slots.
var<workgroup> partial: array<f32, R * WG>;
#if SUBGROUPS
var<workgroup> n_subgroups: atomic<u32>;
#endif

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
  @builtin(subgroup_invocation_id) sid: u32,
#endif
) {
  let row0 = (wid.x + wid.y * P.groups_x) * R;
  if (row0 >= P.rows) {
    return;
  }
  var rows: array<u32, R>;
  for (var r = 0u; r < R; r++) {
    // Rows past the end repeat the last row; their sums are never written.
    rows[r] = min(row0 + r, P.rows - 1u) + P.row_base;
  }
  var acc: array<f32, R>;
  let units = P.cols / 64u;
  for (var u = lid; u < units; u += WG) {
    unit(&acc, rows, u);
  }

#if SUBGROUPS
  for (var r = 0u; r < R; r++) {
    acc[r] = subgroupAdd(acc[r]);
  }
  if (sid == 0u) {
    let slot = atomicAdd(&n_subgroups, 1u);
    for (var r = 0u; r < R; r++) {
      partial[r * WG + slot] = acc[r];
    }
  }
  workgroupBarrier();
  let count = atomicLoad(&n_subgroups);
  for (var r = lid; r < R; r += WG) {
    var sum = 0.0;
    for (var k = 0u; k < count; k++) {
      sum += partial[r * WG + k];
    }
    store(row0 + r, sum);
  }
#else
  for (var r = 0u; r < R; r++) {
    partial[r * WG + lid] = acc[r];
  }
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      for (var r = 0u; r < R; r++) {
        partial[r * WG + lid] += partial[r * WG + lid + s];
      }
    }
    workgroupBarrier();
  }
  for (var r = lid; r < R; r += WG) {
    store(row0 + r, partial[r * WG]);
  }
#endif
}

fn store(row: u32, sum: f32) {
  if (row >= P.rows) {
    return;
  }
#if BIAS
  Y[P.y_offset + row] = sum + B[P.bias_offset + row];
#else
  Y[P.y_offset + row] = sum;
#endif
}
