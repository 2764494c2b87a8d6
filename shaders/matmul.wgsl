// Matrix product for prefill and batches: for m < n and each row of one weight part,
//   Y[y_offset + m * y_stride + row] = sum_k X[x_offset + m * x_stride + k] * W[row, k] (+ B[bias_offset + row]).
//
// Defines: one type name (see quant.wgsl), BIAS.
//
// A 16×16 work-group computes a 64 (X rows) × 64 (W rows) tile of Y, 4×4 values per thread.
// For each 32-wide slice of k, 128 threads dequantize two 16-value chunks of each of the
// 64 W rows into work-group memory (each weight byte is read and decoded once per tile),
// all threads load the 64×32 X slice, and every thread does 4×4×32 FMAs from work-group
// memory. Both tiles are stored k-major so that neighbouring threads read neighbouring words.

struct Params {
  rows: u32,           // rows in this part
  chunks: u32,         // 16-value chunks per row
  cols: u32,
  row_words: u32,
  scale_word: u32,
  blocks_per_row: u32,
  n: u32,              // rows of X (and of Y)
  x_offset: u32,
  x_stride: u32,
  y_offset: u32,       // f32 index of Y[0, this part's first row]
  y_stride: u32,
  bias_offset: u32,
  row_base: u32,       // the part's row 0 is row row_base of its buffer (a row range of a fused weight)
}

const TM: u32 = 64u;   // X rows per tile
const TN: u32 = 64u;   // W rows per tile
const TK: u32 = 32u;   // k per slice (two chunks)

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
#if BIAS
@group(0) @binding(4) var<storage, read> B: array<f32>;
#endif

#include "quant.wgsl"

var<workgroup> xs: array<f32, TK * TM>;   // xs[k * TM + m]
var<workgroup> ws: array<f32, TK * TN>;   // ws[k * TN + row]

@compute @workgroup_size(16, 16)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) local: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let n0 = wid.x * TN;
  let m0 = wid.y * TM;
  let tx = local.x;
  let ty = local.y;
  var acc: array<vec4<f32>, 4>;   // acc[i][j]: Y[m0 + ty + 16i, n0 + tx + 16j]
  let slices = (P.chunks + 1u) / 2u;
  for (var kt = 0u; kt < slices; kt++) {
    if (lid < 2u * TN) {
      let rr = lid >> 1u;
      let half = lid & 1u;
      let c = kt * 2u + half;
      var w = mat4x4<f32>();
      if (c < P.chunks) {
        w = dq16(wrow(min(n0 + rr, P.rows - 1u) + P.row_base), c);
      }
      for (var i = 0u; i < 4u; i++) {
        for (var k = 0u; k < 4u; k++) {
          ws[(half * 16u + 4u * i + k) * TN + rr] = w[i][k];
        }
      }
    }
    for (var e = 0u; e < (TM * TK) / 256u; e++) {
      let idx = lid + 256u * e;
      let m = idx / TK;
      let k = idx % TK;
      let col = kt * TK + k;
      let xr = m0 + m;
      var v = 0.0;
      if (xr < P.n && col < P.cols) {
        v = X[P.x_offset + xr * P.x_stride + col];
      }
      xs[k * TM + m] = v;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      let a = vec4<f32>(xs[k * TM + ty], xs[k * TM + ty + 16u], xs[k * TM + ty + 32u], xs[k * TM + ty + 48u]);
      let b = vec4<f32>(ws[k * TN + tx], ws[k * TN + tx + 16u], ws[k * TN + tx + 32u], ws[k * TN + tx + 48u]);
      acc[0] += a[0] * b;
      acc[1] += a[1] * b;
      acc[2] += a[2] * b;
      acc[3] += a[3] * b;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty + 16u * i;
    if (m >= P.n) {
      continue;
    }
    for (var j = 0u; j < 4u; j++) {
      let row = n0 + tx + 16u * j;
      if (row < P.rows) {
#if BIAS
        Y[P.y_offset + m * P.y_stride + row] = acc[i][j] + B[P.bias_offset + row];
#else
        Y[P.y_offset + m * P.y_stride + row] = acc[i][j];
#endif
      }
    }
  }
}
