// RMSNorm of rows: Y[r] = X[r] / sqrt(mean(X[r]²) + EPS) * W, one work-group per row.
//
// Defines: N (row width), EPS (a float literal), WG (threads, a power of two), X_RW (X is
//   written: RESIDUAL without GATHER, POST, or INPLACE),
//   RESIDUAL  first add H to X (X[r] += H[r], or H[r]·RES_SCALE when that float literal is
//             given: granite's residual_scale): the residual add of the previous block,
//             fused here so the stream is read once;
//   GATHER    rows are picked by the row table (ROWS[S.row_base + r], S.n_rows of them) and
//             written compactly to Y; with RESIDUAL, X itself is left unchanged.
//   POST      a post-norm: X[r] += H[r] / sqrt(mean(H[r]²) + EPS) * W (no Y): a block's
//             output normed before it joins the residual (gemma, olmo2); not with the others.
//   INPLACE   X[r] = X[r] / sqrt(mean(X[r]²) + EPS) * W (no H, no Y): olmo2's norms of the
//             whole Q and K projections; not with the others.
// Without GATHER the rows are the sub-step's tokens (S.n_tokens of them).
#include "tokens.wgsl"

const N: u32 = {{N}}u;
const WG: u32 = {{WG}}u;
const EPS: f32 = {{EPS}};

#if X_RW
@group(0) @binding(0) var<storage, read_write> X: array<f32>;
#else
@group(0) @binding(0) var<storage, read> X: array<f32>;
#endif
#if RESIDUAL || POST
@group(0) @binding(1) var<storage, read> H: array<f32>;
#endif
@group(0) @binding(2) var<storage, read> W: array<f32>;
#if !POST && !INPLACE
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
#endif
@group(0) @binding(4) var<uniform> S: StepInfo;
#if GATHER
@group(0) @binding(5) var<storage, read> ROWS: array<u32>;
#endif

var<workgroup> partial: array<f32, WG>;

fn load(i: u32) -> f32 {
#if POST
  return H[i];
#elif RESIDUAL && RES_SCALE
  return X[i] + H[i] * {{RES_SCALE}};
#elif RESIDUAL
  return X[i] + H[i];
#else
  return X[i];
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x;
#if GATHER
  if (r >= S.n_rows) {
    return;
  }
  let src = ROWS[S.row_base + r] * N;
#else
  if (r >= S.n_tokens) {
    return;
  }
  let src = r * N;
#endif
  let dst = r * N;
  var ss = 0.0;
  for (var i = lid; i < N; i += WG) {
    let v = load(src + i);
#if RESIDUAL && !GATHER
    X[src + i] = v;
#endif
    ss += v * v;
  }
  partial[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      partial[lid] += partial[lid + s];
    }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(partial[0] / f32(N) + EPS);
  for (var i = lid; i < N; i += WG) {
#if POST
    X[src + i] += H[src + i] * inv * W[i];
#elif INPLACE
    X[src + i] = X[src + i] * inv * W[i];
#else
#if RESIDUAL && !GATHER
    let v = X[src + i];
#else
    let v = load(src + i);
#endif
    Y[dst + i] = v * inv * W[i];
#endif
  }
}
