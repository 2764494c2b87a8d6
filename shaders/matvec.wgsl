// Matrix-vector products for decoding, one or a few input rows at a time: for m < n and the
// rows of one weight part (src/gpu/weights.ts), W dequantized on the fly (quant.wgsl),
//   Y[y_offset + m * y_stride + row] = sum_k W[row, k] * X[x_offset + m * x_stride + k] (+ B[bias_offset + row]).
// n = 1 is one sequence's decode step (x_stride, y_stride unused); small n is several
// sequences decoded together, where the product is bandwidth-bound and each weight should
// be read once for all n input rows (the 64×64 tiles of matmul.wgsl would waste most of
// their work at n < 64).
//
// Defines: one type name (see quant.wgsl), WG (threads, a power of two), ROWS (rows per
// work-group), NB (input rows per work-group, ≥ 1), BIAS, PAD_COLS (float weights whose cols
// is not a multiple of 16: x reads past cols become 0), SUBGROUPS (reduce with subgroupAdd;
// any subgroup size).
//
// Each thread walks the rows' 16-value chunks with stride WG. Per chunk it decodes the
// chunk of each of its ROWS rows once, then loads each input row's chunk once and applies it
// to all ROWS rows (reusing x across rows is what makes a matvec bandwidth-bound rather than
// x-bound; reusing the decoded weights across input rows is what lets a small batch read
// its weights once rather than n times). The work-group then sums each of the ROWS × NB
// outputs' WG partial sums. For n > NB, ceil(n / NB) work-groups ("passes") share the same
// rows.
#if SUBGROUPS
enable subgroups;
#endif

#include "matvec-params.wgsl"

const WG: u32 = {{WG}}u;
const R: u32 = {{ROWS}}u;
const NB: u32 = {{NB}}u;
const OUT: u32 = R * NB;   // outputs per work-group: acc[m * R + r], input row m, weight row r

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
// The same buffer range as X: when x_vec4 is set, each input chunk is 4 aligned vec4 loads
// instead of 16 f32 loads (a few % faster on lavapipe, where every load is per invocation).
@group(0) @binding(5) var<storage, read> X4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
#if BIAS
@group(0) @binding(4) var<storage, read> B: array<f32>;
#endif

#include "quant.wgsl"

// Output o's WG partial sums at o * (WG + 1): the padding puts the threads that each sum one
// output on different banks.
var<workgroup> partial: array<f32, (WG + 1u) * OUT>;
#if SUBGROUPS
var<workgroup> n_subgroups: atomic<u32>;
#endif

// The 16 inputs from column `col` of the input row starting at f32 index `base`.
fn load_x(base: u32, col: u32) -> mat4x4<f32> {
  let b = base + col;
  var m: mat4x4<f32>;
  if (P.x_vec4 != 0u) {
    let q = b >> 2u;
    return mat4x4<f32>(X4[q], X4[q + 1u], X4[q + 2u], X4[q + 3u]);
  }
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
  // Work-group g: rows from (g / passes) * R, input rows from (g % passes) * NB. The passes
  // over the same weight rows are neighbours in launch order, so on a GPU all but the first
  // find those rows in cache. (A loop over the passes inside the kernel, with its barriers,
  // ran at half the speed on lavapipe.)
  let passes = (P.n + NB - 1u) / NB;
  let g = wid.x + wid.y * P.groups_x;
  let row0 = (g / passes) * R;
  let m0 = (g % passes) * NB;
  if (row0 >= P.rows) {
    return;
  }
  var rows: array<WRow, R>;
  for (var r = 0u; r < R; r++) {
    // Rows past the end repeat the last row; their sums are never written.
    rows[r] = wrow(min(row0 + r, P.rows - 1u) + P.row_base);
  }

  var acc: array<f32, OUT>;
  for (var c = lid; c < P.chunks; c += WG) {
    var w: array<mat4x4<f32>, R>;
    for (var r = 0u; r < R; r++) {
      w[r] = dq16(rows[r], c);
    }
    for (var m = 0u; m < NB; m++) {
      // Uniform branch: the last pass may hold fewer than NB input rows.
      if (m0 + m < P.n) {
        let x = load_x(P.x_offset + (m0 + m) * P.x_stride, c * 16u);
        for (var r = 0u; r < R; r++) {
          acc[m * R + r] += dot(w[r][0], x[0]) + dot(w[r][1], x[1]) + dot(w[r][2], x[2]) + dot(w[r][3], x[3]);
        }
      }
    }
  }

#if SUBGROUPS
  // Subgroup sums, one slot per subgroup; slots are claimed with an atomic so nothing
  // depends on the subgroup size or on how invocations map to subgroups.
  for (var o = 0u; o < OUT; o++) {
    acc[o] = subgroupAdd(acc[o]);
  }
  if (sid == 0u) {
    let slot = atomicAdd(&n_subgroups, 1u);
    for (var o = 0u; o < OUT; o++) {
      partial[o * (WG + 1u) + slot] = acc[o];
    }
  }
  workgroupBarrier();
  let count = atomicLoad(&n_subgroups);
  for (var o = lid; o < OUT; o += WG) {
    var sum = 0.0;
    for (var k = 0u; k < count; k++) {
      sum += partial[o * (WG + 1u) + k];
    }
    store(row0, m0, o, sum);
  }
#else
  // Each (present) output is then summed by one thread, in order: one barrier instead of
  // log2(WG), which matters where barriers are dear (lavapipe).
  for (var o = 0u; o < OUT; o++) {
    if (m0 + o / R < P.n) {
      partial[o * (WG + 1u) + lid] = acc[o];
    }
  }
  workgroupBarrier();
  for (var o = lid; o < OUT; o += WG) {
    if (m0 + o / R < P.n) {
      var sum = 0.0;
      for (var k = 0u; k < WG; k++) {
        sum += partial[o * (WG + 1u) + k];
      }
      store(row0, m0, o, sum);
    }
  }
#endif
}

// Stores output `o` (input row m0 + o / R, weight row row0 + o % R) when both exist.
fn store(row0: u32, m0: u32, o: u32, sum: f32) {
  let row = row0 + o % R;
  let m = m0 + o / R;
  if (row >= P.rows || m >= P.n) {
    return;
  }
#if BIAS
  Y[P.y_offset + m * P.y_stride + row] = sum + B[P.bias_offset + row];
#else
  Y[P.y_offset + m * P.y_stride + row] = sum;
#endif
}
