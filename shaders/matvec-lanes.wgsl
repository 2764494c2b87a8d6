// Matrix-vector products shaped for CPU adapters (Mesa lavapipe): one weight row per
// invocation ("lane"), no work-group memory, no barrier. Same products, parameters and
// bindings 1–5 as matvec.wgsl:
//   Y[y_offset + m * y_stride + row] = sum_k W[row, k] * X[x_offset + m * x_stride + k] (+ B[bias_offset + row]).
//
// Why a second shape: lavapipe runs a work-group's invocations in SIMD lanes, and every
// storage load whose address differs between lanes becomes a loop over the lanes with a
// bounds-check branch per lane and component. matvec.wgsl gives each lane a different part
// of a row, so every x load is such a loop and the x loads cost about twice the weights'.
// Here all lanes of a work-group walk the same columns at once (each in its own row): the
// x loads are shared by the RL rows of a lane and, being one vec4 per 4 values, stay a
// small part of the cost; the weights are read 16 bytes per load (a vec4<u32>), and each
// 32-bit word is decoded with a few whole-word operations (masks and shifts on 4 packed
// bytes) before unpack4xU8. On GPUs the per-row reads of this shape do not coalesce: use
// matvec.wgsl there.
//
// Defines: one type name of F32 F16 Q4_0 Q5_0 Q8_0 Q4_K Q6_K IQ4_NL (others: matvec.wgsl), WG (threads),
// RL (rows per thread; a work-group covers WG * RL rows: rows lid, lid + WG, ...), NB (input
// rows per work-group, ≥ 1, as in matvec.wgsl), BIAS.
// Requires: P.x_vec4 = 1 (x rows and offset at multiples of 4 f32), float rows without
// padding (cols a multiple of 16, as matvec.wgsl's !PAD_COLS), and every type's row_words a
// multiple of 4 (true of the types above: weights.ts pads float rows to 16 values, and
// their blocks are 4, 8, 36 and 52 words; Q5_0's are 5, so it needs cols a multiple of 128).
// Keep x at 16 vec4s per step: with 32 (Q5_0 over 4 blocks, Q6_K over half a super-block)
// those types ran 2–3× slower on lavapipe; reading X4 directly instead of staging it was
// slower still.

#include "matvec-params.wgsl"

const WG: u32 = {{WG}}u;
const RL: u32 = {{RL}}u;
const NB: u32 = {{NB}}u;
const OUT: u32 = RL * NB;   // sums per thread: acc[m * RL + k], input row m, row k of the lane

// The weight part as 16-byte words (binding 0 of matvec.wgsl, read whole vec4s here).
@group(0) @binding(0) var<storage, read> W4: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> X4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
#if BIAS
@group(0) @binding(4) var<storage, read> B: array<f32>;
#endif

// 32-bit word `i` of W (a scalar read where a type keeps f16 scales apart from its quants).
fn w_word(i: u32) -> u32 {
  return W4[i >> 2u][i & 3u];
}

// f16 number `i` of W.
fn w_f16(i: u32) -> f32 {
  return unpack2x16float(w_word(i >> 1u))[i & 1u];
}

// The 4 bytes of `w` as unsigned / signed values.
fn u8x4(w: u32) -> vec4<f32> {
  return vec4<f32>(unpack4xU8(w));
}
fn s8x4(w: u32) -> vec4<f32> {
  return vec4<f32>(unpack4xI8(w));
}

// Sum of the 16 values at x[i..i+4) (vec4s).
fn dot4(q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, x: ptr<function, array<vec4<f32>, XU * NB>>, i: u32) -> f32 {
  return dot(q0, (*x)[i]) + dot(q1, (*x)[i + 1u]) + dot(q2, (*x)[i + 2u]) + dot(q3, (*x)[i + 3u]);
}

// Sum of the 4*c inputs from vec4 i of x.
fn xsum(x: ptr<function, array<vec4<f32>, XU * NB>>, i: u32, c: u32) -> f32 {
  var s = vec4<f32>(0.0);
  for (var j = 0u; j < c; j++) {
    s += (*x)[i + j];
  }
  return s.x + s.y + s.z + s.w;
}

// Loads XU vec4s of each of the NB input rows, from column `col`, into x[m * XU + i].
fn load_x(x: ptr<function, array<vec4<f32>, XU * NB>>, m0: u32, col: u32) {
  for (var m = 0u; m < NB; m++) {
    // Input rows past n read whatever lies there (or 0 past the binding); never stored.
    let q = (P.x_offset + (m0 + m) * P.x_stride + col) >> 2u;
    for (var i = 0u; i < XU; i++) {
      (*x)[m * XU + i] = X4[q + i];
    }
  }
}

#if F32
const XU: u32 = 16u;   // x vec4s per step: 64 values, 16 weight vec4s
fn row_sums(acc: ptr<function, array<f32, OUT>>, rows: array<u32, RL>, m0: u32) {
  var x: array<vec4<f32>, XU * NB>;
  for (var s = 0u; s < P.cols / 64u; s++) {
    load_x(&x, m0, s * 64u);
    for (var k = 0u; k < RL; k++) {
      let v = rows[k] * (P.row_words >> 2u) + s * 16u;
      for (var i = 0u; i < 4u; i++) {
        let q0 = bitcast<vec4<f32>>(W4[v + 4u * i]);
        let q1 = bitcast<vec4<f32>>(W4[v + 4u * i + 1u]);
        let q2 = bitcast<vec4<f32>>(W4[v + 4u * i + 2u]);
        let q3 = bitcast<vec4<f32>>(W4[v + 4u * i + 3u]);
        for (var m = 0u; m < NB; m++) {
          (*acc)[m * RL + k] += dot4(q0, q1, q2, q3, &x, m * XU + 4u * i);
        }
      }
    }
  }
  tail16(acc, rows, m0, P.cols / 64u);
}
#elif F16
const XU: u32 = 16u;   // 64 values: 8 weight vec4s
fn row_sums(acc: ptr<function, array<f32, OUT>>, rows: array<u32, RL>, m0: u32) {
  var x: array<vec4<f32>, XU * NB>;
  for (var s = 0u; s < P.cols / 64u; s++) {
    load_x(&x, m0, s * 64u);
    for (var k = 0u; k < RL; k++) {
      let v = rows[k] * (P.row_words >> 2u) + s * 8u;
      for (var i = 0u; i < 4u; i++) {
        let a = W4[v + 2u * i];
        let b = W4[v + 2u * i + 1u];
        let q0 = vec4<f32>(unpack2x16float(a.x), unpack2x16float(a.y));
        let q1 = vec4<f32>(unpack2x16float(a.z), unpack2x16float(a.w));
        let q2 = vec4<f32>(unpack2x16float(b.x), unpack2x16float(b.y));
        let q3 = vec4<f32>(unpack2x16float(b.z), unpack2x16float(b.w));
        for (var m = 0u; m < NB; m++) {
          (*acc)[m * RL + k] += dot4(q0, q1, q2, q3, &x, m * XU + 4u * i);
        }
      }
    }
  }
  tail16(acc, rows, m0, P.cols / 64u);
}
#elif Q4_0
const XU: u32 = 16u;   // 64 values: two 32-value blocks of 4 words (vec4) each, two f16 scales
fn row_sums(acc: ptr<function, array<f32, OUT>>, rows: array<u32, RL>, m0: u32) {
  var x: array<vec4<f32>, XU * NB>;
  for (var s = 0u; s < P.blocks_per_row / 2u; s++) {
    load_x(&x, m0, s * 64u);
    // Value = d * (q - 8): the -8 is applied to the sums of x (shared by the RL rows).
    var sx: array<vec2<f32>, NB>;
    for (var m = 0u; m < NB; m++) {
      sx[m] = vec2<f32>(xsum(&x, m * XU, 8u), xsum(&x, m * XU + 8u, 8u));
    }
    for (var k = 0u; k < RL; k++) {
      let d = unpack2x16float(w_word(P.scale_word + ((rows[k] * P.blocks_per_row) >> 1u) + s));
      let v = rows[k] * (P.row_words >> 2u) + 2u * s;
      for (var h = 0u; h < 2u; h++) {
        // Block h: low nibbles are its values 0..15, high nibbles 16..31.
        let q = W4[v + h];
        let lo = q & vec4<u32>(0x0F0F0F0Fu);
        let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
        let l0 = u8x4(lo.x); let l1 = u8x4(lo.y); let l2 = u8x4(lo.z); let l3 = u8x4(lo.w);
        let h0 = u8x4(hi.x); let h1 = u8x4(hi.y); let h2 = u8x4(hi.z); let h3 = u8x4(hi.w);
        for (var m = 0u; m < NB; m++) {
          let i = m * XU + 8u * h;
          let qx = dot4(l0, l1, l2, l3, &x, i) + dot4(h0, h1, h2, h3, &x, i + 4u);
          (*acc)[m * RL + k] += d[h] * (qx - 8.0 * sx[m][h]);
        }
      }
    }
  }
}
#elif IQ4_NL
const XU: u32 = 16u;   // 64 values: two 32-value blocks of 4 words (vec4) each, two f16 scales (as Q4_0)
// kvalues_iq4nl as 4 words of 4 signed bytes (see quant.wgsl): level q is byte q % 4 of word q / 4.
const IQ4_WORDS = vec4<u32>(0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u);
// The levels of the 4 indices held in the bytes of `w` (each byte < 16).
fn iq4x4(w: u32) -> vec4<f32> {
  let q = unpack4xU8(w);
  let b4 = (q & vec4<u32>(4u)) != vec4<u32>(0u);
  let b8 = (q & vec4<u32>(8u)) != vec4<u32>(0u);
  let word = select(select(vec4<u32>(IQ4_WORDS.x), vec4<u32>(IQ4_WORDS.y), b4), select(vec4<u32>(IQ4_WORDS.z), vec4<u32>(IQ4_WORDS.w), b4), b8);
  return vec4<f32>(bitcast<vec4<i32>>(word << ((vec4<u32>(3u) - (q & vec4<u32>(3u))) * 8u)) >> vec4<u32>(24u));
}
fn row_sums(acc: ptr<function, array<f32, OUT>>, rows: array<u32, RL>, m0: u32) {
  var x: array<vec4<f32>, XU * NB>;
  for (var s = 0u; s < P.blocks_per_row / 2u; s++) {
    load_x(&x, m0, s * 64u);
    for (var k = 0u; k < RL; k++) {
      let d = unpack2x16float(w_word(P.scale_word + ((rows[k] * P.blocks_per_row) >> 1u) + s));
      let v = rows[k] * (P.row_words >> 2u) + 2u * s;
      for (var h = 0u; h < 2u; h++) {
        // Block h: low nibbles index its values 0..15, high nibbles 16..31.
        let q = W4[v + h];
        let lo = q & vec4<u32>(0x0F0F0F0Fu);
        let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
        let l0 = iq4x4(lo.x); let l1 = iq4x4(lo.y); let l2 = iq4x4(lo.z); let l3 = iq4x4(lo.w);
        let h0 = iq4x4(hi.x); let h1 = iq4x4(hi.y); let h2 = iq4x4(hi.z); let h3 = iq4x4(hi.w);
        for (var m = 0u; m < NB; m++) {
          let i = m * XU + 8u * h;
          (*acc)[m * RL + k] += d[h] * (dot4(l0, l1, l2, l3, &x, i) + dot4(h0, h1, h2, h3, &x, i + 4u));
        }
      }
    }
  }
}
#elif Q5_0
const XU: u32 = 16u;   // 64 values: two 32-value blocks of 5 words (qh, qs[16]), two f16 scales
// Bit 4 of the 4 values of one qs word: bits s..s+3 of qh spread to bit 4 of each byte.
// The multiply places bit i of the nibble at bit 4 + 8i (shifts 4, 11, 18, 25 never
// overlap, so no carries) for one 32-bit operation instead of four shift-and-ors.
fn q5_high(qh: u32, s: u32) -> vec4<u32> {
  let n = (vec4<u32>(qh) >> vec4<u32>(s, s + 4u, s + 8u, s + 12u)) & vec4<u32>(0xFu);
  return (n * vec4<u32>(0x02040810u)) & vec4<u32>(0x10101010u);
}
// Sum over one block of q * x (q the 5-bit value, 0..31): qs words `qs`, high bits `qh`,
// x vec4s i..i+8 (values 0..15 in the low nibbles, 16..31 in the high ones).
fn q5_block(qh: u32, qs: vec4<u32>, x: ptr<function, array<vec4<f32>, XU * NB>>, i: u32) -> f32 {
  let lo = (qs & vec4<u32>(0x0F0F0F0Fu)) | q5_high(qh, 0u);
  let hi = ((qs >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu)) | q5_high(qh, 16u);
  return dot4(u8x4(lo.x), u8x4(lo.y), u8x4(lo.z), u8x4(lo.w), x, i) +
    dot4(u8x4(hi.x), u8x4(hi.y), u8x4(hi.z), u8x4(hi.w), x, i + 4u);
}
// The f16 scales of blocks f, f + 1 (f even; scale_word a multiple of 4).
fn q5_scales(f: u32) -> vec2<f32> {
  return unpack2x16float(W4[(P.scale_word >> 2u) + (f >> 3u)][(f >> 1u) & 3u]);
}
// Rows of 4-block groups (128 values, 20 words = 5 vec4s: blocks 0-1 in vec4s 0..2.xy, 2-3
// in 2.zw..4), taken 64 values at a time so that x stays 16 vec4s (more spills on lavapipe).
fn row_sums(acc: ptr<function, array<f32, OUT>>, rows: array<u32, RL>, m0: u32) {
  var x: array<vec4<f32>, XU * NB>;
  // Value = d * (q - 16): the -16 is applied to each block's sum of x (shared by the RL rows).
  var sx: array<vec2<f32>, NB>;
  for (var s = 0u; s < P.blocks_per_row / 4u; s++) {
    load_x(&x, m0, s * 128u);
    for (var m = 0u; m < NB; m++) {
      sx[m] = 16.0 * vec2<f32>(xsum(&x, m * XU, 8u), xsum(&x, m * XU + 8u, 8u));
    }
    for (var k = 0u; k < RL; k++) {
      let d = q5_scales(rows[k] * P.blocks_per_row + 4u * s);
      let v = rows[k] * (P.row_words >> 2u) + 5u * s;
      let a = W4[v];
      let b = W4[v + 1u];
      let c = W4[v + 2u];
      for (var m = 0u; m < NB; m++) {
        let i = m * XU;
        let q = vec2<f32>(q5_block(a.x, vec4<u32>(a.yzw, b.x), &x, i), q5_block(b.y, vec4<u32>(b.zw, c.xy), &x, i + 8u));
        (*acc)[m * RL + k] += dot(d, q - sx[m]);
      }
    }
    load_x(&x, m0, s * 128u + 64u);
    for (var m = 0u; m < NB; m++) {
      sx[m] = 16.0 * vec2<f32>(xsum(&x, m * XU, 8u), xsum(&x, m * XU + 8u, 8u));
    }
    for (var k = 0u; k < RL; k++) {
      let d = q5_scales(rows[k] * P.blocks_per_row + 4u * s + 2u);
      let v = rows[k] * (P.row_words >> 2u) + 5u * s + 2u;
      let c = W4[v];
      let e = W4[v + 1u];
      let g = W4[v + 2u];
      for (var m = 0u; m < NB; m++) {
        let i = m * XU;
        let q = vec2<f32>(q5_block(c.z, vec4<u32>(c.w, e.xyz), &x, i), q5_block(e.w, g, &x, i + 8u));
        (*acc)[m * RL + k] += dot(d, q - sx[m]);
      }
    }
  }
}
#elif Q8_0
const XU: u32 = 16u;   // 64 values: two 32-value blocks of 8 words (2 vec4s) each, two f16 scales
fn row_sums(acc: ptr<function, array<f32, OUT>>, rows: array<u32, RL>, m0: u32) {
  var x: array<vec4<f32>, XU * NB>;
  for (var s = 0u; s < P.blocks_per_row / 2u; s++) {
    load_x(&x, m0, s * 64u);
    for (var k = 0u; k < RL; k++) {
      let d = unpack2x16float(w_word(P.scale_word + ((rows[k] * P.blocks_per_row) >> 1u) + s));
      let v = rows[k] * (P.row_words >> 2u) + 4u * s;
      for (var h = 0u; h < 2u; h++) {
        let a = W4[v + 2u * h];
        let b = W4[v + 2u * h + 1u];
        let a0 = s8x4(a.x); let a1 = s8x4(a.y); let a2 = s8x4(a.z); let a3 = s8x4(a.w);
        let b0 = s8x4(b.x); let b1 = s8x4(b.y); let b2 = s8x4(b.z); let b3 = s8x4(b.w);
        for (var m = 0u; m < NB; m++) {
          let i = m * XU + 8u * h;
          (*acc)[m * RL + k] += d[h] * (dot4(a0, a1, a2, a3, &x, i) + dot4(b0, b1, b2, b3, &x, i + 4u));
        }
      }
    }
  }
}
#elif Q4_K
const XU: u32 = 16u;   // 64 values: one pair of 32-value sub-blocks (2 vec4s of nibbles)
// Super-block (36 words = 9 vec4s): d, dmin | scales[12] | qs[128]. Sub-block j's 6-bit
// scale and min (the packing of GGML's get_scale_min_k4), for j = 0..3 and 4..7 at once.
fn k4_scales(h: vec4<u32>) -> array<vec4<f32>, 4> {
  let low6 = vec4<u32>(0x3F3F3F3Fu);
  let sc_hi = (h.w & 0x0F0F0F0Fu) | (((h.y >> 6u) & 0x03030303u) << 4u);
  let mn_hi = ((h.w >> 4u) & 0x0F0F0F0Fu) | (((h.z >> 6u) & 0x03030303u) << 4u);
  let dm = unpack2x16float(h.x);
  return array<vec4<f32>, 4>(
    dm.x * u8x4(h.y & low6.x), dm.x * u8x4(sc_hi),
    dm.y * u8x4(h.z & low6.x), dm.y * u8x4(mn_hi),
  );
}
fn row_sums(acc: ptr<function, array<f32, OUT>>, rows: array<u32, RL>, m0: u32) {
  var x: array<vec4<f32>, XU * NB>;
  for (var sb = 0u; sb < P.blocks_per_row; sb++) {
    var sm: array<array<vec4<f32>, 4>, RL>;
    for (var k = 0u; k < RL; k++) {
      sm[k] = k4_scales(W4[rows[k] * (P.row_words >> 2u) + sb * 9u]);
    }
    for (var p = 0u; p < 4u; p++) {
      load_x(&x, m0, sb * 256u + p * 64u);
      // value = d * sc * q - dmin * mn: the mins apply to the sums of x.
      var sx: array<vec2<f32>, NB>;
      for (var m = 0u; m < NB; m++) {
        sx[m] = vec2<f32>(xsum(&x, m * XU, 8u), xsum(&x, m * XU + 8u, 8u));
      }
      // Sub-blocks 2p (low nibbles) and 2p + 1 (high nibbles) of the 32 bytes at vec4 1 + 2p.
      let j = 2u * p;
      for (var k = 0u; k < RL; k++) {
        let v = rows[k] * (P.row_words >> 2u) + sb * 9u + 1u + 2u * p;
        let sc = vec2<f32>(sm[k][j >> 2u][j & 3u], sm[k][(j + 1u) >> 2u][(j + 1u) & 3u]);
        let mn = vec2<f32>(sm[k][2u + (j >> 2u)][j & 3u], sm[k][2u + ((j + 1u) >> 2u)][(j + 1u) & 3u]);
        let a = W4[v];
        let b = W4[v + 1u];
        let al = a & vec4<u32>(0x0F0F0F0Fu);
        let bl = b & vec4<u32>(0x0F0F0F0Fu);
        let ah = (a >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
        let bh = (b >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
        let l0 = u8x4(al.x); let l1 = u8x4(al.y); let l2 = u8x4(al.z); let l3 = u8x4(al.w);
        let l4 = u8x4(bl.x); let l5 = u8x4(bl.y); let l6 = u8x4(bl.z); let l7 = u8x4(bl.w);
        let h0 = u8x4(ah.x); let h1 = u8x4(ah.y); let h2 = u8x4(ah.z); let h3 = u8x4(ah.w);
        let h4 = u8x4(bh.x); let h5 = u8x4(bh.y); let h6 = u8x4(bh.z); let h7 = u8x4(bh.w);
        for (var m = 0u; m < NB; m++) {
          let i = m * XU;
          let ql = dot4(l0, l1, l2, l3, &x, i) + dot4(l4, l5, l6, l7, &x, i + 4u);
          let qh = dot4(h0, h1, h2, h3, &x, i + 8u) + dot4(h4, h5, h6, h7, &x, i + 12u);
          (*acc)[m * RL + k] += sc.x * ql + sc.y * qh - dot(mn, sx[m]);
        }
      }
    }
  }
}
#elif Q6_K
const XU: u32 = 16u;   // 64 values: a quarter p of a super-block
// Super-block (52 words = 13 vec4s, split-scale): ql[128] (vec4s 0-7), qh[64] (8-11),
// scales[16] int8 (12). Value v = 128n + 32q + l: low 4 bits from ql[64n + 32(q & 1) + l]
// (q >= 2: high nibble), high 2 bits at bit 2q of qh[32n + l]; scale 8n + 2q + l/16;
// value = d * sc * (q6 - 32). Quarter p = 2n + q/2 holds q = 2(p & 1) and 2(p & 1) + 1: the
// low nibbles (p even) or high nibbles (p odd) of half n's ql, qh bits 4(p & 1) + 0..3.
// Quarters rather than halves keep x at 16 vec4s (see the header).
// 4 bits of ql words `l` from bit `s` of each byte, 2 of qh words `h` from bit `t`, as 6-bit values.
fn q6_words(l: vec4<u32>, h: vec4<u32>, s: u32, t: u32) -> vec4<u32> {
  return ((l >> vec4<u32>(s)) & vec4<u32>(0x0F0F0F0Fu)) | (((h >> vec4<u32>(t)) & vec4<u32>(0x03030303u)) << vec4<u32>(4u));
}
fn q6_dot(w: vec4<u32>, x: ptr<function, array<vec4<f32>, XU * NB>>, i: u32) -> f32 {
  return dot4(u8x4(w.x), u8x4(w.y), u8x4(w.z), u8x4(w.w), x, i);
}
fn row_sums(acc: ptr<function, array<f32, OUT>>, rows: array<u32, RL>, m0: u32) {
  var x: array<vec4<f32>, XU * NB>;
  for (var sb = 0u; sb < P.blocks_per_row; sb++) {
    var d: array<f32, RL>;
    for (var k = 0u; k < RL; k++) {
      d[k] = w_f16(P.scale_word * 2u + rows[k] * P.blocks_per_row + sb);
    }
    for (var p = 0u; p < 4u; p++) {
      let n = p >> 1u;
      let sh = 4u * (p & 1u);
      load_x(&x, m0, sb * 256u + p * 64u);
      // The -32 applies to the sums of each 16 inputs g = 2j + h (q = 2(p & 1) + j, l / 16 = h).
      var sx: array<vec4<f32>, NB>;
      for (var m = 0u; m < NB; m++) {
        let i = m * XU;
        sx[m] = 32.0 * vec4<f32>(xsum(&x, i, 4u), xsum(&x, i + 4u, 4u), xsum(&x, i + 8u, 4u), xsum(&x, i + 12u, 4u));
      }
      for (var k = 0u; k < RL; k++) {
        let v = rows[k] * (P.row_words >> 2u) + sb * 13u + 4u * n;
        let lA0 = W4[v];        // ql bytes 0..15 of half n, for even q
        let lA1 = W4[v + 1u];   // bytes 16..31
        let lB0 = W4[v + 2u];   // ql bytes 32..47, for odd q
        let lB1 = W4[v + 3u];
        let h0 = W4[v + 8u - 2u * n];   // qh of half n: vec4 8 + 2n (v already holds 4n)
        let h1 = W4[v + 9u - 2u * n];
        let w00 = q6_words(lA0, h0, sh, sh);
        let w01 = q6_words(lA1, h1, sh, sh);
        let w10 = q6_words(lB0, h0, sh, sh + 2u);
        let w11 = q6_words(lB1, h1, sh, sh + 2u);
        let sc = d[k] * s8x4(w_word(4u * (v - 4u * n + 12u) + 2u * n + (p & 1u)));
        for (var m = 0u; m < NB; m++) {
          let i = m * XU;
          let q = vec4<f32>(q6_dot(w00, &x, i), q6_dot(w01, &x, i + 4u), q6_dot(w10, &x, i + 8u), q6_dot(w11, &x, i + 12u));
          (*acc)[m * RL + k] += dot(sc, q - sx[m]);
        }
      }
    }
  }
}
#endif

#if F32 || F16
// The last cols % 64 columns (a multiple of 16), 16 at a time.
fn tail16(acc: ptr<function, array<f32, OUT>>, rows: array<u32, RL>, m0: u32, first: u32) {
  for (var c = first * 4u; c < P.cols / 16u; c++) {
    var xm: array<mat4x4<f32>, NB>;
    for (var m = 0u; m < NB; m++) {
      let q = (P.x_offset + (m0 + m) * P.x_stride + c * 16u) >> 2u;
      xm[m] = mat4x4<f32>(X4[q], X4[q + 1u], X4[q + 2u], X4[q + 3u]);
    }
    for (var k = 0u; k < RL; k++) {
#if F32
      let v = rows[k] * (P.row_words >> 2u) + c * 4u;
      let w = mat4x4<f32>(bitcast<vec4<f32>>(W4[v]), bitcast<vec4<f32>>(W4[v + 1u]), bitcast<vec4<f32>>(W4[v + 2u]), bitcast<vec4<f32>>(W4[v + 3u]));
#else
      let v = rows[k] * (P.row_words >> 2u) + c * 2u;
      let a = W4[v];
      let b = W4[v + 1u];
      let w = mat4x4<f32>(
        vec4<f32>(unpack2x16float(a.x), unpack2x16float(a.y)), vec4<f32>(unpack2x16float(a.z), unpack2x16float(a.w)),
        vec4<f32>(unpack2x16float(b.x), unpack2x16float(b.y)), vec4<f32>(unpack2x16float(b.z), unpack2x16float(b.w)),
      );
#endif
      for (var m = 0u; m < NB; m++) {
        (*acc)[m * RL + k] += dot(w[0], xm[m][0]) + dot(w[1], xm[m][1]) + dot(w[2], xm[m][2]) + dot(w[3], xm[m][3]);
      }
    }
  }
}
#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // Work-group g: rows from (g / passes) * WG * RL, input rows from (g % passes) * NB.
  let passes = (P.n + NB - 1u) / NB;
  let g = wid.x + wid.y * P.groups_x;
  let first = (g / passes) * (WG * RL) + lid;
  let m0 = (g % passes) * NB;
  var rows: array<u32, RL>;
  for (var k = 0u; k < RL; k++) {
    // Rows past the end repeat the last row; their sums are never written.
    rows[k] = min(first + k * WG, P.rows - 1u) + P.row_base;
  }
  var acc: array<f32, OUT>;
  row_sums(&acc, rows, m0);
  for (var m = 0u; m < NB; m++) {
    for (var k = 0u; k < RL; k++) {
      let row = first + k * WG;
      if (row < P.rows && m0 + m < P.n) {
#if BIAS
        Y[P.y_offset + (m0 + m) * P.y_stride + row] = acc[m * RL + k] + B[P.bias_offset + row];
#else
        Y[P.y_offset + (m0 + m) * P.y_stride + row] = acc[m * RL + k];
#endif
      }
    }
  }
}
