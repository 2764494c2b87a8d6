// Matrix products of several input rows shaped for CPU adapters (Mesa lavapipe): prefill and
// batches. Same products, parameters and bindings 0, 2, 3, 4, 5 as matvec.wgsl:
//   Y[y_offset + m * y_stride + row] = sum_k W[row, k] * X[x_offset + m * x_stride + k] (+ B[bias_offset + row]).
//
// Why: lavapipe runs a work-group's invocations as SIMD lanes of one CPU thread. A storage
// load whose address differs between lanes becomes a loop over the lanes, and a loop or an
// array that its compiler does not unroll keeps its values in per-lane memory. matmul.wgsl's
// 64×64 tiles pay for both (work-group memory, barriers), and so does matvec-lanes.wgsl's NB
// path (its loops over input rows and weight rows index arrays at run time). Here each
// invocation owns RL = 4 weight rows (rows lid, lid + WG, lid + 2 WG, lid + 3 WG of its
// work-group) and NB = 8 input rows, with every loop but the one over chunks written out:
// per 16-value chunk it loads the 8 input rows' 16 x values once (the same address in
// every lane), decodes each of its 4 rows' chunk once (quant.wgsl's dq16), and does
// 4 × 8 × 16 multiply-adds from registers. Each decoded weight serves 8 input rows and each
// x value 4 weight rows. On GPUs the per-row reads of this shape do not coalesce: use
// matmul.wgsl there.
//
// Defines: one type name (see quant.wgsl), WG (threads), BIAS.
// Requires: P.x_vec4 = 1 (x_offset and x_stride multiples of 4 f32), cols a multiple of 16
// (float rows without padding). Work-group g covers rows (g / passes) * WG * 4 .. + WG * 4
// and input rows (g % passes) * 8 .. + 8, passes = ceil(n / 8). Input rows past n read
// whatever lies there (or 0 past the binding) and are never stored.

#include "matvec-params.wgsl"

const WG: u32 = {{WG}}u;
const RL: u32 = 4u;   // weight rows per invocation (written out below)
const NB: u32 = 8u;   // input rows per work-group (written out below)

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(5) var<storage, read> X4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
#if BIAS
@group(0) @binding(4) var<storage, read> B: array<f32>;
#endif

#include "quant.wgsl"

// The 16 x values from vec4 `o` of X4.
fn x16(o: u32) -> mat4x4<f32> {
  return mat4x4<f32>(X4[o], X4[o + 1u], X4[o + 2u], X4[o + 3u]);
}

// Sum of the 16 products of a decoded chunk and 16 x values.
fn dot16(w: mat4x4<f32>, x: mat4x4<f32>) -> f32 {
  return dot(w[0], x[0]) + dot(w[1], x[1]) + dot(w[2], x[2]) + dot(w[3], x[3]);
}

// One chunk of the 8 input rows (members, not an array: lavapipe keeps arrays it cannot
// index at compile time in per-lane memory).
struct X8 {
  a: mat4x4<f32>, b: mat4x4<f32>, c: mat4x4<f32>, d: mat4x4<f32>,
  e: mat4x4<f32>, f: mat4x4<f32>, g: mat4x4<f32>, h: mat4x4<f32>,
}

fn load_x8(o: u32, s: u32) -> X8 {
  return X8(x16(o), x16(o + s), x16(o + 2u * s), x16(o + 3u * s), x16(o + 4u * s), x16(o + 5u * s), x16(o + 6u * s), x16(o + 7u * s));
}

// A decoded chunk of one row applied to the 8 input rows: column j holds input rows 4j..4j+3.
fn apply8(w: mat4x4<f32>, x: X8) -> mat2x4<f32> {
  return mat2x4<f32>(
    vec4<f32>(dot16(w, x.a), dot16(w, x.b), dot16(w, x.c), dot16(w, x.d)),
    vec4<f32>(dot16(w, x.e), dot16(w, x.f), dot16(w, x.g), dot16(w, x.h)),
  );
}

// Stores the 8 sums of one weight row (when the row and the input rows exist).
fn store8(row: u32, m0: u32, acc: mat2x4<f32>) {
  if (row >= P.rows) {
    return;
  }
#if BIAS
  let bias = B[P.bias_offset + row];
#else
  let bias = 0.0;
#endif
  for (var m = 0u; m < NB; m++) {
    if (m0 + m < P.n) {
      Y[P.y_offset + (m0 + m) * P.y_stride + row] = acc[m >> 2u][m & 3u] + bias;
    }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let passes = (P.n + NB - 1u) / NB;
  let g = wid.x + wid.y * P.groups_x;
  let first = (g / passes) * (WG * RL) + lid;
  let m0 = (g % passes) * NB;
  let xs = P.x_stride >> 2u;
  let x0 = (P.x_offset >> 2u) + m0 * xs;
  // Rows past the end repeat the last row; their sums are never stored.
  let r0 = wrow(min(first, P.rows - 1u) + P.row_base);
  let r1 = wrow(min(first + WG, P.rows - 1u) + P.row_base);
  let r2 = wrow(min(first + 2u * WG, P.rows - 1u) + P.row_base);
  let r3 = wrow(min(first + 3u * WG, P.rows - 1u) + P.row_base);
  var a0 = mat2x4<f32>();
  var a1 = mat2x4<f32>();
  var a2 = mat2x4<f32>();
  var a3 = mat2x4<f32>();
  for (var c = 0u; c < P.chunks; c++) {
    let x = load_x8(x0 + 4u * c, xs);
    a0 += apply8(dq16(r0, c), x);
    a1 += apply8(dq16(r1, c), x);
    a2 += apply8(dq16(r2, c), x);
    a3 += apply8(dq16(r3, c), x);
  }
  store8(first, m0, a0);
  store8(first + WG, m0, a1);
  store8(first + 2u * WG, m0, a2);
  store8(first + 3u * WG, m0, a3);
}
