// Log-probabilities of sampled tokens, on the device, for the requests that ask for them
// (OpenAI's `logprobs` / `top_logprobs`). The CPU reference is logprobsOf in
// src/sampling/sampler.ts; the host side is src/gpu/kernels/logprobs.ts.
//
// They are a log-softmax of the model's raw logits (before penalties and temperature), and
// the sampler overwrites its rows in place, so a sub-step that reports logprobs runs:
//   `top`  before the sampler: per row, one work-group copies the raw row to `raw`, finds its
//          max, log-sum-exp and the row's `top_n` largest logits (each thread keeps its own
//          sorted top_n of a strided slice, then top_n rounds of a work-group arg-max merge
//          them), and writes lse and the top list into the row's record;
//   `pick` after the sampler: per row, reads the sampled id and writes raw[id] - lse.
// Rows whose `top_n` is NONE (their request asked for nothing) return at once.
//
// Record of one sampled token (RECORD_WORDS u32, at out_index × RECORD_WORDS, out_index
// being the sampler's index of that id in out_ids): [0] the sampled id, [1] its logprob
// (f32 bits), [2] the log-sum-exp, then MAX_TOP pairs (id, logprob bits).
//
// Defines: WG (threads per work-group, a power of two), VOCAB (logits per row), MAX_TOP.

struct LogprobRow {
  top_n: u32,     // alternatives wanted (≤ MAX_TOP), or NONE
  out_index: u32, // the sampler's out_index of this row
}

const WG: u32 = {{WG}}u;
const V: u32 = {{VOCAB}}u;
const MAX_TOP: u32 = {{MAX_TOP}}u;
const RECORD_WORDS: u32 = 3u + 2u * MAX_TOP;
const NONE: u32 = 0xffffffffu;
const NO_PICK: u32 = 0xffffffffu;
// The lowest finite f32 (Tint rejects an infinite constant); starts maximum searches.
const LOWEST: f32 = -0x1.fffffep+127f;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> rows: array<LogprobRow>;
@group(0) @binding(2) var<storage, read_write> raw: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(4) var<storage, read> out_ids: array<u32>;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> bc_f: f32;
var<workgroup> bc_u: u32;

fn reduce_max(lid: u32, v: f32) -> f32 {
  workgroupBarrier();
  red_f[lid] = v;
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    workgroupBarrier();
    if (lid < w) {
      red_f[lid] = max(red_f[lid], red_f[lid + w]);
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    bc_f = red_f[0];
  }
  return workgroupUniformLoad(&bc_f);
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
  workgroupBarrier();
  red_f[lid] = v;
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    workgroupBarrier();
    if (lid < w) {
      red_f[lid] += red_f[lid + w];
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    bc_f = red_f[0];
  }
  return workgroupUniformLoad(&bc_f);
}

// The index with the largest value over the work-group, lower index on ties; NO_PICK marks
// a thread with nothing to offer.
fn reduce_argmax(lid: u32, v: f32, i: u32) -> u32 {
  workgroupBarrier();
  red_f[lid] = v;
  red_u[lid] = i;
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    workgroupBarrier();
    if (lid < w) {
      let ov = red_f[lid + w];
      let oi = red_u[lid + w];
      let mv = red_f[lid];
      let mi = red_u[lid];
      if (oi != NO_PICK && (mi == NO_PICK || ov > mv || (ov == mv && oi < mi))) {
        red_f[lid] = ov;
        red_u[lid] = oi;
      }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    bc_u = red_u[0];
  }
  return workgroupUniformLoad(&bc_u);
}

@compute @workgroup_size(WG)
fn top(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = rows[wid.x];
  if (r.top_n == NONE) {
    return;
  }
  let n = min(r.top_n, MAX_TOP);
  let base = wid.x * V;
  // This thread's n largest logits of its slice, largest first; an equal value found later
  // (a higher index) never moves ahead of an earlier one.
  var tv: array<f32, MAX_TOP>;
  var ti: array<u32, MAX_TOP>;
  var count = 0u;
  var m = LOWEST;
  for (var i = lid; i < V; i += WG) {
    let l = logits[base + i];
    raw[base + i] = l;
    m = max(m, l);
    if (n > 0u && (count < n || l > tv[n - 1u])) {
      var j = min(count, n - 1u);
      count = min(count + 1u, n);
      while (j > 0u && tv[j - 1u] < l) {
        tv[j] = tv[j - 1u];
        ti[j] = ti[j - 1u];
        j--;
      }
      tv[j] = l;
      ti[j] = i;
    }
  }
  m = reduce_max(lid, m);
  var s = 0.0;
  for (var i = lid; i < V; i += WG) {
    s += exp(logits[base + i] - m);
  }
  let lse = m + log(reduce_sum(lid, s));
  let rec = r.out_index * RECORD_WORDS;
  // n rounds: every thread offers its next candidate, the best one is taken.
  var head = 0u;
  for (var k = 0u; k < n; k++) {
    var v = LOWEST;
    var id = NO_PICK;
    if (head < count) {
      v = tv[head];
      id = ti[head];
    }
    let best = reduce_argmax(lid, v, id);
    if (best == NO_PICK) {
      break; // fewer tokens than asked for (a vocabulary under MAX_TOP)
    }
    if (id == best) {
      head++;
      out[rec + 3u + 2u * k] = best;
      out[rec + 4u + 2u * k] = bitcast<u32>(v - lse);
    }
  }
  if (lid == 0u) {
    out[rec + 2u] = bitcast<u32>(lse);
  }
}

@compute @workgroup_size(1)
fn pick(@builtin(workgroup_id) wid: vec3<u32>) {
  let r = rows[wid.x];
  if (r.top_n == NONE) {
    return;
  }
  let rec = r.out_index * RECORD_WORDS;
  let id = min(out_ids[r.out_index], V - 1u);
  out[rec] = id;
  out[rec + 1u] = bitcast<u32>(raw[wid.x * V + id] - bitcast<f32>(out[rec + 2u]));
}
