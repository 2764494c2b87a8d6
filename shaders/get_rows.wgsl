// Row gather with dequantization (token embedding lookup):
//   Y[y_offset + m * y_stride + k] = W[ids[ids_offset + m] - first_row, k]  for k < cols,
// for the m whose id falls in this weight part's rows [first_row, first_row + rows); other m
// are left to the dispatches of the other parts. Ids come from a GPU buffer so that a token
// sampled on the GPU can feed the next step without a round trip to the CPU.
//
// Defines: one type name (see quant.wgsl). Grid: x covers the row's chunks (64 per
// work-group), y is m.

struct Params {
  rows: u32,           // rows in this part
  chunks: u32,         // 16-value chunks per row
  cols: u32,
  row_words: u32,
  scale_word: u32,
  blocks_per_row: u32,
  first_row: u32,      // first row of this part in the whole weight
  ids_offset: u32,
  y_offset: u32,
  y_stride: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

#include "quant.wgsl"

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let m = gid.y;
  let id = ids[P.ids_offset + m];
  if (c >= P.chunks || id < P.first_row || id - P.first_row >= P.rows) {
    return;
  }
  let w = dq16(wrow(id - P.first_row), c);
  let base = P.y_offset + m * P.y_stride;
  for (var i = 0u; i < 4u; i++) {
    for (var k = 0u; k < 4u; k++) {
      let col = c * 16u + 4u * i + k;
      if (col < P.cols) {
        Y[base + col] = w[i][k];
      }
    }
  }
}
