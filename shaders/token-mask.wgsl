// Constrained decoding's token mask, on the device: sets to -inf every logit whose token the
// request's grammar does not allow, just before the sampler (after the logprob kernels'
// copy of the raw logits, so logprobs stay those of the raw distribution, as llama.cpp's
// n_probs). The CPU twin is applyTokenMask in src/model/cpu-runner.ts; the host side is
// src/gpu/kernels/token-mask.ts.
//
// `masks` holds a header of MAX_ROWS u32, then one bitmask of WORDS u32 per masked row:
//   masks[m]                      the logit row of masked row m (m < the dispatch's y size)
//   masks[MAX_ROWS + m × WORDS + w] bit b set = token 32w + b allowed
// Rows without a mask are absent from the dispatch: they are neither read nor written.
// One thread per mask word (32 logits); work-group (x, m) covers words x×WG .. x×WG+WG-1.
//
// Defines: WG (threads per work-group), VOCAB (logits per row), WORDS (ceil(VOCAB / 32)),
// MAX_ROWS (header entries).

const WG: u32 = {{WG}}u;
const V: u32 = {{VOCAB}}u;
const WORDS: u32 = {{WORDS}}u;
const MAX_ROWS: u32 = {{MAX_ROWS}}u;
// -inf's bits. Tint rejects an infinite constant expression, so the value is made at run
// time from a variable (see `negative_infinity`).
const NEG_INF_BITS: u32 = 0xff800000u;

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> masks: array<u32>;

fn negative_infinity() -> f32 {
  var bits = NEG_INF_BITS;
  return bitcast<f32>(bits);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = wid.x * WG + lid;
  if (w >= WORDS) {
    return;
  }
  let m = wid.y;
  let bits = masks[MAX_ROWS + m * WORDS + w];
  if (bits == 0xffffffffu) {
    return; // all 32 allowed: nothing to write
  }
  let base = masks[m] * V;
  let neg_inf = negative_infinity();
  let first = 32u * w;
  let count = min(32u, V - first);
  for (var b = 0u; b < count; b++) {
    if (((bits >> b) & 1u) == 0u) {
      logits[base + first + b] = neg_inf;
    }
  }
}
