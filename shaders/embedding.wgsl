// Token embedding lookup from a (quantized) table: X[t] = row id(t) of the table,
// dequantized, for each token t of the sub-step. One work-group per token; one dispatch
// per weight part (src/gpu/weights.ts), each writing only the tokens whose row it holds.
// A token record's FROM_LAST_SAMPLED id is resolved here from LAST[slot], the id the
// sampler wrote on the device.
//
// Defines: one type name (see quant.wgsl), WIDTH (n_embd, the table's cols), WG, SCALE
//   (optional: multiplies each value, gemma's √n_embd).
#include "tokens.wgsl"

const WIDTH: u32 = {{WIDTH}}u;
const WG: u32 = {{WG}}u;

struct Params {
  row_words: u32,
  scale_word: u32,
  blocks_per_row: u32,
  chunks: u32,       // 16-value chunks per row
  first_row: u32,    // first table row in this part
  rows: u32,         // rows in this part
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<uniform> P: Params;
@group(0) @binding(2) var<storage, read> TOK: array<TokenRecord>;
@group(0) @binding(3) var<storage, read> LAST: array<i32>;
@group(0) @binding(4) var<storage, read_write> X: array<f32>;
@group(0) @binding(5) var<uniform> S: StepInfo;

#include "quant.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  if (t >= S.n_tokens) {
    return;
  }
  let tok = TOK[S.token_base + t];
  var id = tok.id;
  if (id == FROM_LAST_SAMPLED) {
    id = u32(LAST[tok.slot]);
  }
  if (id < P.first_row || id - P.first_row >= P.rows) {
    return;
  }
  let r = wrow(id - P.first_row);
  let out = t * WIDTH;
  for (var c = lid; c < P.chunks; c += WG) {
    let m = dq16(r, c);
    for (var i = 0u; i < 4u; i++) {
      for (var k = 0u; k < 4u; k++) {
        let col = 16u * c + 4u * i + k;
        if (col < WIDTH) {
#if SCALE
          X[out + col] = m[i][k] * {{SCALE}};
#else
          X[out + col] = m[i][k];
#endif
        }
      }
    }
  }
}
