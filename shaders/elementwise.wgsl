// Element-wise ops over the sub-step's rows of WIDTH values, A updated in place (from B
// for the binary ops). One op per variant:
//   SWIGLU   A = silu(A) · B          (A = gate, B = up), over S.n_tokens rows
//   GEGLU    A = gelu_tanh(A) · B     (gemma's gate), over S.n_tokens rows
//   ADD      A = A + B                (residual add), over S.n_tokens rows
//   SOFTCAP  A = CAP · tanh(A / CAP)  (gemma2's final logits), over S.n_rows rows, no B
//   SCALE    A = A · FACTOR           (granite's logits / logit_scale), over S.n_rows rows, no B
// Defines: WIDTH, WG, the op name, CAP for SOFTCAP, FACTOR for SCALE. The grid may be 2-D when it has
// more than 65535 work-groups along x; the element index is linear over both.
#include "tokens.wgsl"

const WIDTH: u32 = {{WIDTH}}u;
const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<storage, read_write> A: array<f32>;
#if !SOFTCAP && !SCALE
@group(0) @binding(1) var<storage, read> B: array<f32>;
#endif
@group(0) @binding(2) var<uniform> S: StepInfo;

// tanh with its argument clamped to ±10, where f32 tanh is already ±1: some WGSL
// implementations compute tanh as a quotient of exponentials that overflows to inf/inf.
fn tanh_clamped(x: f32) -> f32 {
  return tanh(clamp(x, -10.0, 10.0));
}

#if GEGLU
// GELU, tanh approximation (ggml's gelu): 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))).
fn gelu_tanh(x: f32) -> f32 {
  return 0.5 * x * (1.0 + tanh_clamped(0.7978845608028654 * x * (1.0 + 0.044715 * x * x)));
}
#endif

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wid.x + wid.y * groups.x) * WG + lid;
#if SOFTCAP
  if (i >= S.n_rows * WIDTH) {
    return;
  }
  let cap = {{CAP}};
  A[i] = cap * tanh_clamped(A[i] / cap);
#elif SCALE
  if (i >= S.n_rows * WIDTH) {
    return;
  }
  A[i] = A[i] * {{FACTOR}};
#else
  if (i >= S.n_tokens * WIDTH) {
    return;
  }
#endif
#if SWIGLU
  let g = A[i];
  // silu(g) = g·sigmoid(g); for g → -∞, exp(-g) overflows to +∞ and the quotient is -0.
  A[i] = g / (1.0 + exp(-g)) * B[i];
#elif GEGLU
  A[i] = gelu_tanh(A[i]) * B[i];
#elif ADD
  A[i] = A[i] + B[i];
#endif
}
