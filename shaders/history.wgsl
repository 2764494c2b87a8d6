// Appends the sub-step's fed tokens to each slot's penalty history ring, resolving
// FROM_LAST_SAMPLED ids from LAST. Layout (src/gpu/kernels/history.ts), per slot
// CAP + 1 words from slot·(CAP + 1): word 0 = tokens appended so far (monotonic),
// word 1 + (n mod CAP) = the n-th token.
//
// One work-group. All counts are read before any is bumped (a barrier between), so each
// token lands at count + its index within its entry; then each entry's last token bumps
// its slot's count by the entry's length. A sub-step never holds two entries of one slot.
// Defines: CAP, WG.
#include "tokens.wgsl"

const CAP: u32 = {{CAP}}u;
const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<storage, read> TOK: array<TokenRecord>;
@group(0) @binding(1) var<storage, read> LAST: array<i32>;
@group(0) @binding(2) var<storage, read_write> HIST: array<u32>;
@group(0) @binding(3) var<uniform> S: StepInfo;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  let n = S.n_tokens;
  for (var i = lid; i < n; i += WG) {
    let tok = TOK[S.token_base + i];
    var id = tok.id;
    if (id == FROM_LAST_SAMPLED) {
      id = u32(LAST[tok.slot]);
    }
    let base = tok.slot * (CAP + 1u);
    let index = HIST[base] + (tok.seq & ~LAST_IN_ENTRY);
    HIST[base + 1u + index % CAP] = id;
  }
  storageBarrier();
  for (var i = lid; i < n; i += WG) {
    let tok = TOK[S.token_base + i];
    if ((tok.seq & LAST_IN_ENTRY) != 0u) {
      let base = tok.slot * (CAP + 1u);
      HIST[base] = HIST[base] + (tok.seq & ~LAST_IN_ENTRY) + 1u;
    }
  }
}
