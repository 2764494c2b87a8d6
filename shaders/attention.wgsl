// Causal grouped-query attention over the paged KV pool, flash-attention style: each
// work-group walks the keys of its token's sequence in tiles of WG positions, keeping a running
// maximum and sum per query head (online softmax), so work-group memory is a fixed few KiB
// whatever the context length.
//
// Work-group (t, g): token t of the sub-step, query heads [g·GB, g·GB + GB), all in the
// same KV group (GB divides N_HEADS / N_KV_HEADS), so each key and value row read from the
// cache serves GB heads. The token sees positions 0..pos of its sequence, itself included
// (its K/V were appended by the rope kernel earlier in the same pass), through its slot's
// page table PT[slot·MAX_PAGES ..] (kv-pool.wgsl): position p is pool row
// PT[p / PAGE_SIZE]·PAGE_SIZE + p % PAGE_SIZE; thread j finds the row of the tile's key j
// once and shares it in work-group memory for the value pass.
//
// Split ("flash decoding"): a decode step has one token per sequence, so the grid above is
// a handful of work-groups walking hundreds of positions one after another, on a GPU with
// over a hundred cores. With SPLIT, work-group (t, g, s) of a grid with Z work-groups along
// z takes the s-th of Z equal spans of the token's positions and writes its partial state
// (running max m, sum l, unnormalised outputs) to a scratch buffer; `combine` then merges
// the Z partials of each (token, head): O = Σ e^(m_s - M) acc_s / Σ e^(m_s - M) l_s.
//
// Within a tile, thread j scores key j for the GB heads; the weights e^(s - m) are then
// computed once per key (by its thread) into work-group memory, and every thread adds the
// weighted values of its output dimensions.
//
// Sliding window (WINDOW, gemma2/gemma3's local layers): a token at pos sees only the
// WINDOW positions pos - WINDOW + 1 .. pos (llama.cpp's LLAMA_SWA_TYPE_STANDARD masks key p0
// for query p1 when p1 - p0 ≥ n_swa). The walk starts at the window's first position, so
// older positions (and the pages that hold only them) are never read, in the split path too.
//
// Scores: q·k · SCALE (1/√HEAD_DIM unless SCALE is given: gemma's 1/√query_pre_attn_scalar),
// then with SOFTCAP (gemma2's attn_logit_softcapping) CAP · tanh(score / CAP), as llama.cpp
// caps kq after the scale and before the mask and softmax.
//
// Defines: HEAD_DIM, N_HEADS, N_KV_HEADS, MAX_PAGES (page-table entries per slot), GB,
//   WG (threads = tile), SCALE (optional), SOFTCAP with CAP, WINDOW (0 = no window), the
//   pool's (kv-pool.wgsl: KV_F16, PAGE_SIZE, ROWS_PER_BINDING, KV_B2..KV_B4), SPLIT (with
//   MAX_SPLITS and SPLIT_TOKENS: partials for at most SPLIT_TOKENS tokens). Output O[t, h·HEAD_DIM + d], like Q.
#include "tokens.wgsl"
#include "kv-pool.wgsl"

const HEAD_DIM: u32 = {{HEAD_DIM}}u;
const N_HEADS: u32 = {{N_HEADS}}u;
const N_KV_HEADS: u32 = {{N_KV_HEADS}}u;
const MAX_PAGES: u32 = {{MAX_PAGES}}u;
const GB: u32 = {{GB}}u;
const WG: u32 = {{WG}}u;
const GROUP: u32 = N_HEADS / N_KV_HEADS;
const Q_DIM: u32 = N_HEADS * HEAD_DIM;
const KV_DIM: u32 = N_KV_HEADS * HEAD_DIM;
const DPT: u32 = (HEAD_DIM + WG - 1u) / WG;   // output dims per thread
#if WINDOW
const WINDOW: u32 = {{WINDOW}}u;
#endif
#if SOFTCAP
const CAP: f32 = {{CAP}};
#endif

@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> KC0: array<KvWord>;
@group(0) @binding(2) var<storage, read> VC0: array<KvWord>;
#if SPLIT
const MAX_SPLITS: u32 = {{MAX_SPLITS}}u;
const SPLIT_TOKENS: u32 = {{SPLIT_TOKENS}}u;
const PART: u32 = HEAD_DIM + 2u;   // one partial: m, l, then HEAD_DIM accumulators
// SCR[t] = the split count of token t (as f32), then the partials from SPLIT_TOKENS on:
// partial (t, h, s) at SPLIT_TOKENS + ((t·N_HEADS + h)·MAX_SPLITS + s)·PART.
@group(0) @binding(3) var<storage, read_write> SCR: array<f32>;
@group(0) @binding(6) var<storage, read_write> O: array<f32>;

fn partial_at(t: u32, h: u32, s: u32) -> u32 {
  return SPLIT_TOKENS + ((t * N_HEADS + h) * MAX_SPLITS + s) * PART;
}
#else
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
#endif
@group(0) @binding(4) var<storage, read> TOK: array<TokenRecord>;
@group(0) @binding(5) var<uniform> S: StepInfo;
@group(0) @binding(7) var<storage, read> PT: array<u32>;

var<workgroup> qs: array<f32, GB * HEAD_DIM>;   // the GB query heads, pre-scaled
var<workgroup> scores: array<f32, GB * WG>;     // scores[g·WG + j] of the current tile
#if KV_B2
var<workgroup> key_binding: array<u32, WG>;    // binding of the tile's key j
#endif
var<workgroup> key_base: array<u32, WG>;       // its first element for this work-group's KV head
var<workgroup> last_pos: u32;
var<workgroup> table_base: u32;

#if KV_F16
fn key(b: u32, i: u32) -> f32 {
  return unpack2x16float(k_word(b, i >> 1u))[i & 1u];
}
fn value(b: u32, i: u32) -> f32 {
  return unpack2x16float(v_word(b, i >> 1u))[i & 1u];
}
#else
fn key(b: u32, i: u32) -> f32 {
  return k_word(b, i);
}
fn value(b: u32, i: u32) -> f32 {
  return v_word(b, i);
}
#endif

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let t = wid.x;
  if (t >= S.n_tokens) {
    return;
  }
  let h0 = wid.y * GB;              // first query head of this work-group
  let kvh = h0 / GROUP;
#if SCALE
  let scale = {{SCALE}};
#else
  let scale = 1.0 / sqrt(f32(HEAD_DIM));
#endif
  for (var i = lid; i < GB * HEAD_DIM; i += WG) {
    qs[i] = Q[t * Q_DIM + h0 * HEAD_DIM + i] * scale;
  }
  if (lid == 0u) {
    let tok = TOK[S.token_base + t];
    last_pos = tok.pos;
    table_base = tok.slot * MAX_PAGES;
  }
  // Loop bounds must be uniform across the work-group for the barriers inside.
  let pos = workgroupUniformLoad(&last_pos);
  let table = workgroupUniformLoad(&table_base);
  // This work-group's positions [start, end): all of first..pos, or one of nwg.z spans.
  let end_all = pos + 1u;
#if WINDOW
  let first_key = select(0u, end_all - WINDOW, end_all > WINDOW);
#else
  let first_key = 0u;
#endif
  let n_keys = end_all - first_key;
  let span = (n_keys + nwg.z - 1u) / nwg.z;
  let start = first_key + min(wid.z * span, n_keys);
  let end = min(start + span, end_all);

  var m: array<f32, GB>;
  var l: array<f32, GB>;
  var acc: array<array<f32, DPT>, GB>;
  for (var g = 0u; g < GB; g++) {
    m[g] = -3.0e38;
  }
  for (var t0 = start; t0 < end; t0 += WG) {
    let n = min(WG, end - t0);
    if (lid < n) {
      // Zeroed explicitly: some compilers hoist a loop-local `var` and initialise it once.
      var s: array<f32, GB>;
      for (var g = 0u; g < GB; g++) {
        s[g] = 0.0;
      }
      let p = t0 + lid;
      let place = kv_place(PT[table + p / PAGE_SIZE] * PAGE_SIZE + p % PAGE_SIZE);
      let b = place.x;
      let row = place.y * KV_DIM + kvh * HEAD_DIM;
#if KV_B2
      key_binding[lid] = b;
#endif
      key_base[lid] = row;
      for (var d = 0u; d < HEAD_DIM; d++) {
        let k = key(b, row + d);
        for (var g = 0u; g < GB; g++) {
          s[g] += qs[g * HEAD_DIM + d] * k;
        }
      }
      for (var g = 0u; g < GB; g++) {
#if SOFTCAP
        // tanh's argument clamped where f32 tanh is already ±1 (see elementwise.wgsl).
        scores[g * WG + lid] = CAP * tanh(clamp(s[g] / CAP, -10.0, 10.0));
#else
        scores[g * WG + lid] = s[g];
#endif
      }
    }
    workgroupBarrier();
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
    workgroupBarrier();   // every thread has read the raw scores
    if (lid < n) {
      for (var g = 0u; g < GB; g++) {
        scores[g * WG + lid] = exp(scores[g * WG + lid] - m_new[g]);
      }
    }
    workgroupBarrier();
    // Keys of one page are consecutive pool rows: one look-up per page, then a stride.
    var first = 0u;
    while (first < n) {
      let page_end = min(n, first + PAGE_SIZE - (t0 + first) % PAGE_SIZE);
#if KV_B2
      let b = key_binding[first];
#else
      let b = 0u;
#endif
      let page_base = key_base[first];
      for (var jj = first; jj < page_end; jj++) {
        let row = page_base + (jj - first) * KV_DIM;
        var v: array<f32, DPT>;
        for (var i = 0u; i < DPT; i++) {
          let d = lid + i * WG;
          if (d < HEAD_DIM) {
            v[i] = value(b, row + d);
          }
        }
        for (var g = 0u; g < GB; g++) {
          let p = scores[g * WG + jj];
          l[g] += p;
          for (var i = 0u; i < DPT; i++) {
            acc[g][i] += p * v[i];
          }
        }
      }
      first = page_end;
    }
    workgroupBarrier();
  }
#if SPLIT
  if (wid.y == 0u && wid.z == 0u && lid == 0u) {
    SCR[t] = f32(nwg.z);
  }
  for (var g = 0u; g < GB; g++) {
    let at = partial_at(t, h0 + g, wid.z);
    if (lid == 0u) {
      SCR[at] = m[g];
      SCR[at + 1u] = l[g];
    }
    for (var i = 0u; i < DPT; i++) {
      let d = lid + i * WG;
      if (d < HEAD_DIM) {
        SCR[at + 2u + d] = acc[g][i];
      }
    }
  }
#else
  for (var g = 0u; g < GB; g++) {
    let out = t * Q_DIM + (h0 + g) * HEAD_DIM;
    for (var i = 0u; i < DPT; i++) {
      let d = lid + i * WG;
      if (d < HEAD_DIM) {
        O[out + d] = acc[g][i] / l[g];
      }
    }
  }
#endif
}

#if SPLIT
// Work-group (t, h): merges the partials of token t, head h into O.
@compute @workgroup_size(WG)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  if (t >= S.n_tokens) {
    return;
  }
  let h = wid.y;
  let splits = u32(SCR[t]);
  var mx = -3.0e38;
  for (var s = 0u; s < splits; s++) {
    mx = max(mx, SCR[partial_at(t, h, s)]);
  }
  var l = 0.0;
  for (var s = 0u; s < splits; s++) {
    let at = partial_at(t, h, s);
    l += exp(SCR[at] - mx) * SCR[at + 1u];
  }
  for (var d = lid; d < HEAD_DIM; d += WG) {
    var o = 0.0;
    for (var s = 0u; s < splits; s++) {
      let at = partial_at(t, h, s);
      o += exp(SCR[at] - mx) * SCR[at + 2u + d];
    }
    O[t * Q_DIM + h * HEAD_DIM + d] = o / l;
  }
}
#endif
