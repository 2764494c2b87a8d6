// The paged KV pool, as the rope kernel (which writes it) and attention (which reads it)
// see one layer of it. The pool holds pages of PAGE_SIZE positions; row r of the pool
// (r = page·PAGE_SIZE + position within the page) holds N_KV_HEADS·HEAD_DIM values of K
// (and of V, in the V buffers). A sequence's page table maps its position p to the row
// PT[p / PAGE_SIZE]·PAGE_SIZE + p % PAGE_SIZE.
//
// One storage binding may not hold a layer's pool (128 MiB by default in browsers and on
// lavapipe), so the rows are spread over KV_BINDINGS bindings of ROWS_PER_BINDING rows
// each (whole pages): row r is row r % ROWS_PER_BINDING of binding r / ROWS_PER_BINDING.
// WGSL has no arrays of bindings, so the bindings past the first are declared one by one
// (KV_B2, KV_B3, KV_B4: at least 2, 3, 4 bindings) and picked by a branch that is uniform
// within a page. Binding 0 (KC0, VC0) is declared by the including shader at its own
// binding numbers; the others sit at 16..21 in every shader.
//
// Defines: KV_F16 (packed f16 pairs, else f32), PAGE_SIZE, ROWS_PER_BINDING, KV_B2..KV_B4,
//   KV_ACCESS (`read` or `read_write`), KV_WRITE (declare store_kv).

#if KV_F16
alias KvWord = u32;
#else
alias KvWord = f32;
#endif

const PAGE_SIZE: u32 = {{PAGE_SIZE}}u;
const ROWS_PER_BINDING: u32 = {{ROWS_PER_BINDING}}u;

#if KV_B2
@group(0) @binding(16) var<storage, {{KV_ACCESS}}> KC1: array<KvWord>;
@group(0) @binding(17) var<storage, {{KV_ACCESS}}> VC1: array<KvWord>;
#endif
#if KV_B3
@group(0) @binding(18) var<storage, {{KV_ACCESS}}> KC2: array<KvWord>;
@group(0) @binding(19) var<storage, {{KV_ACCESS}}> VC2: array<KvWord>;
#endif
#if KV_B4
@group(0) @binding(20) var<storage, {{KV_ACCESS}}> KC3: array<KvWord>;
@group(0) @binding(21) var<storage, {{KV_ACCESS}}> VC3: array<KvWord>;
#endif

// (binding, row within it) of pool row `row`.
fn kv_place(row: u32) -> vec2<u32> {
#if KV_B2
  let b = row / ROWS_PER_BINDING;
  return vec2<u32>(b, row - b * ROWS_PER_BINDING);
#else
  return vec2<u32>(0u, row);
#endif
}

// Word i of binding b of K, of V.
fn k_word(b: u32, i: u32) -> KvWord {
#if KV_B4
  if (b == 3u) {
    return KC3[i];
  }
#endif
#if KV_B3
  if (b == 2u) {
    return KC2[i];
  }
#endif
#if KV_B2
  if (b == 1u) {
    return KC1[i];
  }
#endif
  return KC0[i];
}

fn v_word(b: u32, i: u32) -> KvWord {
#if KV_B4
  if (b == 3u) {
    return VC3[i];
  }
#endif
#if KV_B3
  if (b == 2u) {
    return VC2[i];
  }
#endif
#if KV_B2
  if (b == 1u) {
    return VC1[i];
  }
#endif
  return VC0[i];
}

#if KV_WRITE
// Writes word i of binding b: k to K, v to V.
fn store_kv(b: u32, i: u32, k: KvWord, v: KvWord) {
#if KV_B4
  if (b == 3u) {
    KC3[i] = k;
    VC3[i] = v;
    return;
  }
#endif
#if KV_B3
  if (b == 2u) {
    KC2[i] = k;
    VC2[i] = v;
    return;
  }
#endif
#if KV_B2
  if (b == 1u) {
    KC1[i] = k;
    VC1[i] = v;
    return;
  }
#endif
  KC0[i] = k;
  VC0[i] = v;
}
#endif
