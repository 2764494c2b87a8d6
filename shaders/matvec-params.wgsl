// The uniform parameters of one matrix-vector or lanes product (matvec.wgsl,
// matvec-lanes.wgsl, matvec-blocks.wgsl, matmul-lanes.wgsl), written by
// src/gpu/kernels/matmul.ts in this order. Each kernel's header says which fields it reads
// and what it requires of them (x_vec4 = 1, n = 1, ...).
struct Params {
  rows: u32,           // rows in this part
  chunks: u32,         // 16-value chunks per row
  cols: u32,
  row_words: u32,
  scale_word: u32,
  blocks_per_row: u32,
  x_offset: u32,       // f32 index of X[0, 0]
  y_offset: u32,       // f32 index of Y[0, this part's first row]
  bias_offset: u32,    // f32 index of this part's first bias
  groups_x: u32,       // work-groups along x (the grid is 2-D when it has over 65535)
  n: u32,              // input rows (1 for a single matrix-vector product)
  x_stride: u32,       // f32 elements between input rows
  y_stride: u32,       // f32 elements between output rows
  x_vec4: u32,         // 1 when every input row starts at a multiple of 4 f32 (X4 may be read)
  row_base: u32,       // the part's row 0 is row row_base of its buffer (a row range of a fused weight)
}
