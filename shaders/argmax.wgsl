// Greedy sampling: for each logits row r, the first index of its largest value goes to
// OUT[rows[r].out_index] and LAST[rows[r].slot] (so the next step's embedding lookup finds
// it on the device). One work-group per row. It reads only `slot` and `out_index` of the
// SampleRow (src/gpu/kernels/sampling-hook.ts); the full sampler honours the rest.
//
// Defines: VOCAB (row length and stride), WG (a power of two).

struct SampleRow {
  slot: u32,
  sample_index: u32,
  seed: u32,
  top_k: u32,
  temperature: f32,
  top_p: f32,
  min_p: f32,
  repeat_penalty: f32,
  presence_penalty: f32,
  frequency_penalty: f32,
  penalty_window: u32,
  out_index: u32,
}

const VOCAB: u32 = {{VOCAB}}u;
const WG: u32 = {{WG}}u;
const NONE: u32 = 0xFFFFFFFFu;

@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read> ROWS: array<SampleRow>;
@group(0) @binding(2) var<storage, read_write> OUT: array<i32>;
@group(0) @binding(3) var<storage, read_write> LAST: array<i32>;

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

// Whether (v, i) beats (bv, bi): larger value, or equal value and smaller index. NaN never
// beats anything (comparisons with NaN are false), and NONE marks "nothing seen".
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x;
  let base = r * VOCAB;
  var bv = 0.0;
  var bi = NONE;
  for (var i = lid; i < VOCAB; i += WG) {
    let v = L[base + i];
    // Strictly greater, so a thread keeps the first of equal values it sees.
    if (v == v && (bi == NONE || v > bv)) {
      bv = v;
      bi = i;
    }
  }
  best_value[lid] = bv;
  best_index[lid] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s && beats(best_value[lid + s], best_index[lid + s], best_value[lid], best_index[lid])) {
      best_value[lid] = best_value[lid + s];
      best_index[lid] = best_index[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    var id = best_index[0];
    if (id == NONE) {
      id = 0u; // every value NaN: the CPU's argmax also answers 0
    }
    let row = ROWS[r];
    OUT[row.out_index] = i32(id);
    LAST[row.slot] = i32(id);
  }
}
