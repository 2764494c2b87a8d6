// Matrix-vector product for decoding: Y[y_offset + row] = sum_k W[row, k] * X[x_offset + k] (+ B[bias_offset + row])
// for the rows of one weight part (src/gpu/weights.ts), W dequantized on the fly (quant.wgsl).
//
// Defines: one type name (see quant.wgsl), WG (threads, a power of two), ROWS (rows per
// work-group), BIAS, PAD_COLS (float weights whose cols is not a multiple of 16: x reads
// past cols become 0), SUBGROUPS (reduce with subgroupAdd; any subgroup size).
//
// Each thread walks the row's 16-value chunks with stride WG, loads the input chunk once and
// applies it to all ROWS rows (reusing x is what makes this bandwidth-bound rather than
// x-bound), then the work-group sums each row's WG partial sums.
#if SUBGROUPS
enable subgroups;
#endif

struct Params {
  rows: u32,           // rows in this part
  chunks: u32,         // 16-value chunks per row
  cols: u32,
  row_words: u32,
  scale_word: u32,
  blocks_per_row: u32,
  x_offset: u32,       // f32 index of x[0]
  y_offset: u32,       // f32 index of this part's first output
  bias_offset: u32,    // f32 index of this part's first bias
  groups_x: u32,       // work-groups along x (the grid may be 2-D when rows/ROWS > 65535)
}

const WG: u32 = {{WG}}u;
const R: u32 = {{ROWS}}u;

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
#if BIAS
@group(0) @binding(4) var<storage, read> B: array<f32>;
#endif

#include "quant.wgsl"

var<workgroup> partial: array<f32, WG * R>;
#if SUBGROUPS
var<workgroup> n_subgroups: atomic<u32>;
#endif

fn load_x(col: u32) -> mat4x4<f32> {
  let b = P.x_offset + col;
  var m: mat4x4<f32>;
  for (var i = 0u; i < 4u; i++) {
#if PAD_COLS
    let c = col + 4u * i;
    let inside = vec4<bool>(c < P.cols, c + 1u < P.cols, c + 2u < P.cols, c + 3u < P.cols);
    let v = vec4<f32>(X[b + 4u * i], X[b + 4u * i + 1u], X[b + 4u * i + 2u], X[b + 4u * i + 3u]);
    m[i] = select(vec4<f32>(0.0), v, inside);
#else
    m[i] = vec4<f32>(X[b + 4u * i], X[b + 4u * i + 1u], X[b + 4u * i + 2u], X[b + 4u * i + 3u]);
#endif
  }
  return m;
}

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
  var acc: array<f32, R>;
  var rows: array<WRow, R>;
  for (var r = 0u; r < R; r++) {
    // Rows past the end repeat the last row; their sums are never written.
    rows[r] = wrow(min(row0 + r, P.rows - 1u));
  }
  for (var c = lid; c < P.chunks; c += WG) {
    let x = load_x(c * 16u);
    for (var r = 0u; r < R; r++) {
      let w = dq16(rows[r], c);
      acc[r] += dot(w[0], x[0]) + dot(w[1], x[1]) + dot(w[2], x[2]) + dot(w[3], x[3]);
    }
  }

#if SUBGROUPS
  // Subgroup sums, one slot per subgroup; slots are claimed with an atomic so nothing
  // depends on the subgroup size or on how invocations map to subgroups.
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
  if (lid < R && row0 + lid < P.rows) {
    let count = atomicLoad(&n_subgroups);
    var sum = 0.0;
    for (var k = 0u; k < count; k++) {
      sum += partial[lid * WG + k];
    }
    store(row0 + lid, sum);
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
  if (lid < R && row0 + lid < P.rows) {
    store(row0 + lid, partial[lid * WG]);
  }
#endif
}

fn store(row: u32, sum: f32) {
#if BIAS
  Y[P.y_offset + row] = sum + B[P.bias_offset + row];
#else
  Y[P.y_offset + row] = sum;
#endif
}
