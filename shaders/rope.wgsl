// Rotary position embedding of the sub-step's Q and K heads, with the K/V append to the
// cache fused in: one work-group per (token, head), heads 0..N_HEADS-1 of Q, then
// N_KV_HEADS heads of K (each also copies its V head into the cache).
//
// Defines: HEAD_DIM, N_HEADS, N_KV_HEADS, ROPE_DIMS (rotated leading dims of a head), WG, NEOX (pairs (i, i + ROPE_DIMS/2); else
//   adjacent pairs (2i, 2i+1)), QK_NORM (qwen3: RMSNorm each head first, with EPS and the
//   weights NORM[0..HEAD_DIM) for Q and NORM[HEAD_DIM..2·HEAD_DIM) for K),
//   ATTN_FACTOR (optional: multiplies cos and sin of the rotated pairs, as ggml's rope
//   `attn_factor`/mscale does for LongRoPE; the dims past ROPE_DIMS are left as they are),
//   and the pool's (kv-pool.wgsl: KV_F16, PAGE_SIZE, ROWS_PER_BINDING, KV_B2..KV_B4).
//
// Angles: FREQ[i] = (f, fract(256·f)) where f is pair i's frequency in turns per position
// (scaling and divisors applied, computed in f64 on the CPU). With pos = 256a + b,
// fract(pos·f) = fract(a·fract(256f) + b·f) keeps the product small, so the angle stays
// accurate to ~1e-5 turns at positions where pos·f in f32 would be off by 1e-3; and the
// angle is reduced to [-π, π] before sin/cos, where WGSL bounds their error.
//
// Cache layout (per layer, kv-pool.wgsl): the token's K and V go to pool row `kv_row` of
// its TokenRecord (its page table applied on the CPU), element
// (row·N_KV_HEADS + kv_head)·HEAD_DIM + d of the row's binding.
#include "tokens.wgsl"
#include "kv-pool.wgsl"

const HEAD_DIM: u32 = {{HEAD_DIM}}u;
const N_HEADS: u32 = {{N_HEADS}}u;
const N_KV_HEADS: u32 = {{N_KV_HEADS}}u;
const ROPE_HALF: u32 = {{ROPE_DIMS}}u / 2u;
const WG: u32 = {{WG}}u;
const Q_DIM: u32 = N_HEADS * HEAD_DIM;
const KV_DIM: u32 = N_KV_HEADS * HEAD_DIM;
const TAU: f32 = 6.283185307179586;

@group(0) @binding(0) var<storage, read_write> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> KC0: array<KvWord>;
@group(0) @binding(4) var<storage, read_write> VC0: array<KvWord>;
@group(0) @binding(5) var<storage, read> FREQ: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read> TOK: array<TokenRecord>;
@group(0) @binding(7) var<uniform> S: StepInfo;
#if QK_NORM
@group(0) @binding(8) var<storage, read> NORM: array<f32>;
const EPS: f32 = {{EPS}};
var<workgroup> partial: array<f32, WG>;
#endif

var<workgroup> head: array<f32, HEAD_DIM>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  let h = wid.y;
  if (t >= S.n_tokens) {
    return;
  }
  let tok = TOK[S.token_base + t];
  let is_q = h < N_HEADS;
  let kvh = h - N_HEADS; // only meaningful when !is_q
  var src = t * KV_DIM + kvh * HEAD_DIM;
  if (is_q) {
    src = t * Q_DIM + h * HEAD_DIM;
  }
  for (var d = lid; d < HEAD_DIM; d += WG) {
    if (is_q) {
      head[d] = Q[src + d];
    } else {
      head[d] = K[src + d];
    }
  }
  workgroupBarrier();

#if QK_NORM
  var ss = 0.0;
  for (var d = lid; d < HEAD_DIM; d += WG) {
    ss += head[d] * head[d];
  }
  partial[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      partial[lid] += partial[lid + s];
    }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(partial[0] / f32(HEAD_DIM) + EPS);
  let norm0 = select(HEAD_DIM, 0u, is_q);
  for (var d = lid; d < HEAD_DIM; d += WG) {
    head[d] = head[d] * inv * NORM[norm0 + d];
  }
  workgroupBarrier();
#endif

  let a_pos = f32(tok.pos >> 8u);
  let b_pos = f32(tok.pos & 255u);
  for (var i = lid; i < ROPE_HALF; i += WG) {
    let f = FREQ[i];
    let turns = fract(fract(a_pos * f.y) + fract(b_pos * f.x));
    let angle = TAU * (turns - round(turns));
#if ATTN_FACTOR
    let c = cos(angle) * {{ATTN_FACTOR}};
    let s = sin(angle) * {{ATTN_FACTOR}};
#else
    let c = cos(angle);
    let s = sin(angle);
#endif
#if NEOX
    let ia = i;
    let ib = i + ROPE_HALF;
#else
    let ia = 2u * i;
    let ib = 2u * i + 1u;
#endif
    let x0 = head[ia];
    let x1 = head[ib];
    head[ia] = x0 * c - x1 * s;
    head[ib] = x0 * s + x1 * c;
  }
  workgroupBarrier();

  if (is_q) {
    for (var d = lid; d < HEAD_DIM; d += WG) {
      Q[src + d] = head[d];
    }
    return;
  }
  let place = kv_place(tok.kv_row);
  let dst = (place.y * N_KV_HEADS + kvh) * HEAD_DIM;
#if KV_F16
  for (var j = lid; j < HEAD_DIM / 2u; j += WG) {
    let k = pack2x16float(vec2<f32>(head[2u * j], head[2u * j + 1u]));
    store_kv(place.x, dst / 2u + j, k, pack2x16float(vec2<f32>(V[src + 2u * j], V[src + 2u * j + 1u])));
  }
#else
  for (var d = lid; d < HEAD_DIM; d += WG) {
    store_kv(place.x, dst + d, head[d], V[src + d]);
  }
#endif
}
