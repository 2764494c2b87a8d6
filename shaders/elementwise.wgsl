// Element-wise ops over the sub-step's token rows (S.n_tokens rows of WIDTH values),
// A updated in place from B. One op per variant:
//   SWIGLU  A = silu(A) · B   (A = gate, B = up)
//   ADD     A = A + B         (residual add)
// Defines: WIDTH, WG, and the op name. The grid may be 2-D when it has more than 65535
// work-groups along x; the element index is linear over both.
#include "tokens.wgsl"

const WIDTH: u32 = {{WIDTH}}u;
const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<storage, read_write> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<uniform> S: StepInfo;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wid.x + wid.y * groups.x) * WG + lid;
  if (i >= S.n_tokens * WIDTH) {
    return;
  }
#if SWIGLU
  let g = A[i];
  // silu(g) = g·sigmoid(g); for g → -∞, exp(-g) overflows to +∞ and the quotient is -0.
  A[i] = g / (1.0 + exp(-g)) * B[i];
#elif ADD
  A[i] = A[i] + B[i];
#endif
}
