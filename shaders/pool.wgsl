// Embedding pooling: adds the sub-step's output-normed rows (S.n_rows rows of WIDTH values,
// gathered by the final norm) into one running sum, so that a mean over a sequence of any
// length reads back a single row. The caller zeroes SUM before the sequence's first chunk
// and divides by the token count after its last.
// Defines: WIDTH, WG.
#include "tokens.wgsl"

const WIDTH: u32 = {{WIDTH}}u;
const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> SUM: array<f32>;
@group(0) @binding(2) var<uniform> S: StepInfo;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= WIDTH) {
    return;
  }
  var acc = 0.0;
  for (var r = 0u; r < S.n_rows; r++) {
    acc += X[r * WIDTH + i];
  }
  SUM[i] = SUM[i] + acc;
}
