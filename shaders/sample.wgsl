// Token sampling on the device, one row of logits per work-group: the algorithm of
// src/engine/sampler.ts, step for step (read its header first), so that both draw the same
// token from the same logits, parameters, history, seed and counter (up to f32 rounding at a
// boundary: the CPU sums in f64 and sorts, we sum in f32 in a different order).
//
// Defines: WG (threads per work-group, a power of two), VOCAB (logits per row), HISTORY_CAP
// (entries of a slot's token ring), SCRATCH (u32 words of work-group memory, ≥ HISTORY_CAP:
// first the penalty window, later the candidate values).
//
// The row's logits are overwritten in place: with the penalized logits, then (when not
// greedy) with the unnormalized probabilities p = exp(l / T - max). Nothing here sorts:
// - thresholds (top-k, top-p) are found by a search over the f32 bit pattern of p: positive
//   floats order like their u32 bits, so deciding 2 bits per pass from the top finds the
//   exact k-th largest p (or the top-p cut) in 15 passes. Each pass counts and sums the p at
//   or above 4 candidate thresholds;
// - as soon as the values at or above the current lower bound fit in work-group memory
//   (SCRATCH), they are copied there and later passes read only them (with minP = 0.05,
//   the default, that is usually before the first pass);
// - the walk in index order splits the row into WG contiguous chunks: per-thread sums, a
//   prefix over threads, then the one thread whose chunk holds the target walks it.
// No subgroup operations (Deno and lavapipe have none), so there is one path everywhere.

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

struct Stats {
  count: vec4<u32>, // how many p are ≥ each of 4 thresholds
  sum: vec4<f32>,   // the sum of those p
}

const WG: u32 = {{WG}}u;
const V: u32 = {{VOCAB}}u;
const CAP: u32 = {{HISTORY_CAP}}u;
const SCRATCH: u32 = {{SCRATCH}}u;
const NO_PICK: u32 = 0xffffffffu;

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> rows: array<SampleRow>;
@group(0) @binding(2) var<storage, read> history: array<u32>;
@group(0) @binding(3) var<storage, read_write> last_sampled: array<u32>;
@group(0) @binding(4) var<storage, read_write> out_ids: array<u32>;

var<workgroup> red_u: array<vec4<u32>, WG>;
var<workgroup> red_f: array<vec4<f32>, WG>;
var<workgroup> scratch: array<u32, SCRATCH>;
var<workgroup> bc_u: vec4<u32>;   // reduction results, broadcast with workgroupUniformLoad
var<workgroup> bc_f: vec4<f32>;
var<workgroup> cand_len: u32;     // 0: candidates not gathered; else 1 + their number
var<workgroup> n_cand: atomic<u32>;
var<workgroup> pick: atomic<u32>;
var<workgroup> last_kept: atomic<u32>; // 1 + the largest kept index (0: none)

// The lowest finite f32 (Tint rejects an infinite constant); starts maximum searches.
const LOWEST: f32 = -0x1.fffffep+127f;

// murmur3's 32-bit finalizer, as mix32 in sampler.ts (u32 multiplication wraps like Math.imul).
fn mix32(x0: u32) -> u32 {
  var x = x0;
  x = x ^ (x >> 16u);
  x = x * 0x85ebca6bu;
  x = x ^ (x >> 13u);
  x = x * 0xc2b2ae35u;
  return x ^ (x >> 16u);
}

// As uniform(seed, counter) in sampler.ts: 24 bits, exact in f32.
fn uniform01(seed: u32, counter: u32) -> f32 {
  let a = mix32(seed ^ 0x9e3779b9u);
  let b = mix32(a + counter * 0x9e3779b9u + 0x7f4a7c15u);
  return f32(b >> 8u) * (1.0 / 16777216.0); // × 2^-24: exact, where a division may not be
}

// Sums every thread's (c, s) over the work-group; the result is uniform.
fn reduce_stats(lid: u32, c: vec4<u32>, s: vec4<f32>) -> Stats {
  workgroupBarrier(); // readers of the previous reduction are done with red_*
  red_u[lid] = c;
  red_f[lid] = s;
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    workgroupBarrier();
    if (lid < w) {
      red_u[lid] += red_u[lid + w];
      red_f[lid] += red_f[lid + w];
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    bc_u = red_u[0];
    bc_f = red_f[0];
  }
  return Stats(workgroupUniformLoad(&bc_u), workgroupUniformLoad(&bc_f));
}

fn reduce_max(lid: u32, v: f32) -> f32 {
  workgroupBarrier();
  red_f[lid].x = v;
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    workgroupBarrier();
    if (lid < w) {
      red_f[lid].x = max(red_f[lid].x, red_f[lid + w].x);
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    bc_f = red_f[0];
  }
  return workgroupUniformLoad(&bc_f).x;
}

// The first index of the largest value over the work-group (each thread passes its own best).
fn reduce_argmax(lid: u32, v: f32, i: u32) -> u32 {
  workgroupBarrier();
  red_f[lid].x = v;
  red_u[lid].x = i;
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    workgroupBarrier();
    if (lid < w) {
      let ov = red_f[lid + w].x;
      let oi = red_u[lid + w].x;
      let mv = red_f[lid].x;
      let mi = red_u[lid].x;
      // NO_PICK marks a thread without elements; a real -Infinity must still win over it.
      if (oi != NO_PICK && (mi == NO_PICK || ov > mv || (ov == mv && oi < mi))) {
        red_f[lid].x = ov;
        red_u[lid].x = oi;
      }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    bc_u = red_u[0];
  }
  return workgroupUniformLoad(&bc_u).x;
}

// Step 1: penalties over the last min(penalty_window, count, CAP) tokens of the slot's ring,
// once per distinct token (at the window position of its last occurrence, so exactly one
// thread writes each penalized logit, reading the unpenalized value).
fn apply_penalties(lid: u32, r: SampleRow, base: u32) {
  let enabled = r.repeat_penalty != 1.0 || r.presence_penalty != 0.0 || r.frequency_penalty != 0.0;
  if (!enabled || r.penalty_window == 0u) {
    return;
  }
  let ring = r.slot * (CAP + 1u);
  let count = history[ring];
  let w = min(min(r.penalty_window, count), CAP);
  let first = count - w;
  for (var j = lid; j < w; j += WG) {
    scratch[j] = history[ring + 1u + (first + j) % CAP];
  }
  workgroupBarrier();
  for (var j = lid; j < w; j += WG) {
    let t = scratch[j];
    var last = t < V;
    for (var k = j + 1u; k < w && last; k++) {
      last = scratch[k] != t;
    }
    if (!last) {
      continue;
    }
    var c = 1u;
    for (var k = 0u; k < j; k++) {
      c += select(0u, 1u, scratch[k] == t);
    }
    var l = logits[base + t];
    if (r.repeat_penalty != 1.0) {
      l = select(l * r.repeat_penalty, l / r.repeat_penalty, l > 0.0);
    }
    logits[base + t] = l - r.presence_penalty - f32(c) * r.frequency_penalty;
  }
  storageBarrier(); // the penalized logits are read by other threads next
}

fn accumulate(p: f32, piv: vec4<f32>, c: ptr<function, vec4<u32>>, s: ptr<function, vec4<f32>>) {
  let ge = vec4<f32>(p) >= piv;
  *c += select(vec4<u32>(0u), vec4<u32>(1u), ge);
  *s += select(vec4<f32>(0.0), vec4<f32>(p), ge);
}

// Counts and sums of the p ≥ each pivot, over the gathered candidates when there are some
// (every pivot is then ≥ the bound they were gathered with), else over the row.
fn stats(lid: u32, base: u32, piv: vec4<f32>) -> Stats {
  let cl = workgroupUniformLoad(&cand_len);
  var c = vec4<u32>(0u);
  var s = vec4<f32>(0.0);
  if (cl > 0u) {
    for (var j = lid; j < cl - 1u; j += WG) {
      accumulate(bitcast<f32>(scratch[j]), piv, &c, &s);
    }
  } else {
    for (var i = lid; i < V; i += WG) {
      accumulate(logits[base + i], piv, &c, &s);
    }
  }
  return reduce_stats(lid, c, s);
}

// Copies the `count` p ≥ lo into work-group memory when they fit (once per row).
fn maybe_gather(lid: u32, base: u32, lo: f32, count: u32) {
  let cl = workgroupUniformLoad(&cand_len);
  if (cl > 0u || count > SCRATCH) {
    return;
  }
  for (var i = lid; i < V; i += WG) {
    let p = logits[base + i];
    if (p >= lo) {
      let k = atomicAdd(&n_cand, 1u);
      if (k < SCRATCH) {
        scratch[k] = bitcast<u32>(p);
      }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    cand_len = count + 1u;
  }
  // The next workgroupUniformLoad(&cand_len) is a barrier, so the values are visible then.
}

// The largest threshold t ≥ lower with metric(p ≥ t) ≥ goal, where the metric is the count
// (by_count) or the sum of those p; lower when even t = lower misses the goal. Binary
// lifting over the f32 bits of t, 2 bits per pass: p ≤ 1 < 2, so bits 29..0 are enough.
fn search(lid: u32, base: u32, by_count: bool, goal: f32, lower: f32) -> f32 {
  var res = 0u;
  for (var it = 0u; it < 15u; it++) {
    let shift = 28u - 2u * it;
    var piv: vec4<f32>;
    for (var d = 0u; d < 4u; d++) {
      piv[d] = max(bitcast<f32>(res | (d << shift)), lower);
    }
    let st = stats(lid, base, piv);
    let m = select(st.sum, vec4<f32>(st.count), by_count);
    var d = 0u;
    // m is monotone in the pivot (counts exactly; f32 sums of more non-negative terms too).
    if (m.y >= goal) { d = 1u; }
    if (m.z >= goal) { d = 2u; }
    if (m.w >= goal) { d = 3u; }
    res |= d << shift;
    maybe_gather(lid, base, piv[d], st.count[d]);
  }
  return max(bitcast<f32>(res), lower);
}

// Step 5: the first kept index (p ≥ thr) at which the running sum of kept p exceeds u × their
// total, walking in index order.
fn walk(lid: u32, base: u32, thr: f32, u: f32) -> u32 {
  let chunk = (V + WG - 1u) / WG;
  let start = min(lid * chunk, V);
  let end = min(start + chunk, V);
  var s = 0.0;
  var last = 0u;
  for (var i = start; i < end; i++) {
    let p = logits[base + i];
    if (p >= thr) {
      s += p;
      last = i + 1u;
    }
  }
  if (last > 0u) {
    atomicMax(&last_kept, last);
  }
  // Inclusive prefix sum of the chunk sums over threads (Hillis–Steele).
  workgroupBarrier();
  red_f[lid].x = s;
  for (var off = 1u; off < WG; off <<= 1u) {
    workgroupBarrier();
    var add = 0.0;
    if (lid >= off) {
      add = red_f[lid - off].x;
    }
    workgroupBarrier();
    red_f[lid].x += add;
  }
  workgroupBarrier();
  let incl = red_f[lid].x;
  var excl = 0.0;
  if (lid > 0u) {
    excl = red_f[lid - 1u].x;
  }
  let goal_sum = u * red_f[WG - 1u].x;
  // Chunk intervals [excl, incl) partition [0, total): at most one thread walks.
  if (excl <= goal_sum && goal_sum < incl) {
    let local_goal = goal_sum - excl;
    var running = 0.0;
    var found = NO_PICK;
    var last_positive = start;
    for (var i = start; i < end; i++) {
      let p = logits[base + i];
      if (p >= thr && p > 0.0) {
        running += p;
        last_positive = i;
        if (running > local_goal) {
          found = i;
          break;
        }
      }
    }
    // Not found only through rounding of target - excl: the chunk's last kept p > 0.
    atomicStore(&pick, select(found, last_positive, found == NO_PICK));
  }
  workgroupBarrier();
  let picked = atomicLoad(&pick);
  if (picked != NO_PICK) {
    return picked;
  }
  // target ≥ total only through rounding: the last kept index, as sampler.ts returns.
  return max(atomicLoad(&last_kept), 1u) - 1u;
}

fn write_out(lid: u32, r: SampleRow, id: u32) {
  if (lid == 0u) {
    out_ids[r.out_index] = id;
    last_sampled[r.slot] = id;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = rows[wid.x];
  let base = wid.x * V;
  if (lid == 0u) {
    cand_len = 0u;
    atomicStore(&n_cand, 0u);
    atomicStore(&pick, NO_PICK);
    atomicStore(&last_kept, 0u);
  }
  workgroupBarrier();

  apply_penalties(lid, r, base);

  // Step 2: greedy, the first index of the largest logit.
  if (r.temperature <= 0.0) {
    var bv = LOWEST;
    var bi = NO_PICK;
    for (var i = lid; i < V; i += WG) {
      let l = logits[base + i];
      if (bi == NO_PICK || l > bv) {
        bv = l;
        bi = i;
      }
    }
    write_out(lid, r, min(reduce_argmax(lid, bv, bi), V - 1u));
    return;
  }

  // Step 3: l / T, its maximum, then p = exp(l / T - max) in place (the top p is 1).
  let t = r.temperature;
  var m = LOWEST;
  for (var i = lid; i < V; i += WG) {
    m = max(m, logits[base + i] / t);
  }
  m = reduce_max(lid, m);
  // Step 4 starts here: count and sum the p ≥ minP while writing them.
  let thr0 = select(0.0, r.min_p, r.min_p > 0.0);
  var c = vec4<u32>(0u);
  var s = vec4<f32>(0.0);
  for (var i = lid; i < V; i += WG) {
    let p = exp(logits[base + i] / t - m);
    logits[base + i] = p;
    accumulate(p, vec4<f32>(thr0), &c, &s);
  }
  storageBarrier(); // the walk reads p written by other threads
  let st0 = reduce_stats(lid, c, s);

  let need_k = r.top_k > 0u && r.top_k < V;
  let need_p = r.top_p < 1.0;
  if (need_k || need_p) {
    maybe_gather(lid, base, thr0, st0.count.x);
  }
  var thr = thr0;
  // With at most k tokens at or above minP, the k-th largest p keeps the same set: skip it.
  if (need_k && st0.count.x > r.top_k) {
    thr = search(lid, base, true, f32(r.top_k), thr0);
  }
  if (need_p) {
    let kept = stats(lid, base, vec4<f32>(thr));
    maybe_gather(lid, base, thr, kept.count.x);
    thr = search(lid, base, false, r.top_p * kept.sum.x, thr);
  }

  let id = walk(lid, base, thr, uniform01(r.seed, r.sample_index));
  write_out(lid, r, min(id, V - 1u));
}
