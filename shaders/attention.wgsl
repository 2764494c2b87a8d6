// Causal grouped-query attention over the slotted KV cache, flash-attention style: each
// work-group walks the keys of its token's slot in tiles of WG positions, keeping a running
// maximum and sum per query head (online softmax), so work-group memory is a fixed few KiB
// whatever the context length.
//
// Work-group (t, g): token t of the sub-step, query heads [g·GB, g·GB + GB), all in the
// same KV group (GB divides N_HEADS / N_KV_HEADS), so each key and value row read from the
// cache serves GB heads. The token sees positions 0..pos of its slot, itself included (its
// K/V were appended by the rope kernel earlier in the same pass).
//
// Defines: HEAD_DIM, N_HEADS, N_KV_HEADS, CTX (positions per slot), GB, WG (threads = tile),
//   KV_F16 (cache of packed f16 pairs). Output O[t, h·HEAD_DIM + d], like Q.
#include "tokens.wgsl"

const HEAD_DIM: u32 = {{HEAD_DIM}}u;
const N_HEADS: u32 = {{N_HEADS}}u;
const N_KV_HEADS: u32 = {{N_KV_HEADS}}u;
const CTX: u32 = {{CTX}}u;
const GB: u32 = {{GB}}u;
const WG: u32 = {{WG}}u;
const GROUP: u32 = N_HEADS / N_KV_HEADS;
const Q_DIM: u32 = N_HEADS * HEAD_DIM;
const KV_DIM: u32 = N_KV_HEADS * HEAD_DIM;
const DPT: u32 = (HEAD_DIM + WG - 1u) / WG;   // output dims per thread

@group(0) @binding(0) var<storage, read> Q: array<f32>;
#if KV_F16
@group(0) @binding(1) var<storage, read> KC: array<u32>;
@group(0) @binding(2) var<storage, read> VC: array<u32>;
#else
@group(0) @binding(1) var<storage, read> KC: array<f32>;
@group(0) @binding(2) var<storage, read> VC: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@group(0) @binding(4) var<storage, read> TOK: array<TokenRecord>;
@group(0) @binding(5) var<uniform> S: StepInfo;

var<workgroup> qs: array<f32, GB * HEAD_DIM>;   // the GB query heads, pre-scaled
var<workgroup> scores: array<f32, GB * WG>;     // scores[g·WG + j] of the current tile
var<workgroup> last_pos: u32;
var<workgroup> slot_base: u32;

#if KV_F16
fn key(i: u32) -> f32 {
  return unpack2x16float(KC[i >> 1u])[i & 1u];
}
fn value(i: u32) -> f32 {
  return unpack2x16float(VC[i >> 1u])[i & 1u];
}
#else
fn key(i: u32) -> f32 {
  return KC[i];
}
fn value(i: u32) -> f32 {
  return VC[i];
}
#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  if (t >= S.n_tokens) {
    return;
  }
  let h0 = wid.y * GB;              // first query head of this work-group
  let kvh = h0 / GROUP;
  let scale = 1.0 / sqrt(f32(HEAD_DIM));
  for (var i = lid; i < GB * HEAD_DIM; i += WG) {
    qs[i] = Q[t * Q_DIM + h0 * HEAD_DIM + i] * scale;
  }
  if (lid == 0u) {
    let tok = TOK[S.token_base + t];
    last_pos = tok.pos;
    slot_base = tok.slot * CTX * KV_DIM + kvh * HEAD_DIM;
  }
  // Loop bounds must be uniform across the work-group for the barriers inside.
  let pos = workgroupUniformLoad(&last_pos);
  let base = workgroupUniformLoad(&slot_base);

  var m: array<f32, GB>;
  var l: array<f32, GB>;
  var acc: array<array<f32, DPT>, GB>;
  for (var g = 0u; g < GB; g++) {
    m[g] = -3.0e38;
  }
  for (var t0 = 0u; t0 <= pos; t0 += WG) {
    let j = t0 + lid;
    if (j <= pos) {
      // Zeroed explicitly: some compilers hoist a loop-local `var` and initialise it once.
      var s: array<f32, GB>;
      for (var g = 0u; g < GB; g++) {
        s[g] = 0.0;
      }
      let row = base + j * KV_DIM;
      for (var d = 0u; d < HEAD_DIM; d++) {
        let k = key(row + d);
        for (var g = 0u; g < GB; g++) {
          s[g] += qs[g * HEAD_DIM + d] * k;
        }
      }
      for (var g = 0u; g < GB; g++) {
        scores[g * WG + lid] = s[g];
      }
    }
    workgroupBarrier();
    let n = min(WG, pos + 1u - t0);
    var m_new: array<f32, GB>;
    for (var g = 0u; g < GB; g++) {
      var mx = m[g];
      for (var jj = 0u; jj < n; jj++) {
        mx = max(mx, scores[g * WG + jj]);
      }
      m_new[g] = mx;
      let alpha = exp(m[g] - mx);
      l[g] *= alpha;
      for (var i = 0u; i < DPT; i++) {
        acc[g][i] *= alpha;
      }
      m[g] = mx;
    }
    for (var jj = 0u; jj < n; jj++) {
      let row = base + (t0 + jj) * KV_DIM;
      var v: array<f32, DPT>;
      for (var i = 0u; i < DPT; i++) {
        let d = lid + i * WG;
        if (d < HEAD_DIM) {
          v[i] = value(row + d);
        }
      }
      for (var g = 0u; g < GB; g++) {
        let p = exp(scores[g * WG + jj] - m_new[g]);
        l[g] += p;
        for (var i = 0u; i < DPT; i++) {
          acc[g][i] += p * v[i];
        }
      }
    }
    workgroupBarrier();
  }
  for (var g = 0u; g < GB; g++) {
    let out = t * Q_DIM + (h0 + g) * HEAD_DIM;
    for (var i = 0u; i < DPT; i++) {
      let d = lid + i * WG;
      if (d < HEAD_DIM) {
        O[out + d] = acc[g][i] / l[g];
      }
    }
  }
}
