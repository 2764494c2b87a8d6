// Per-step tables shared by the model kernels (rmsnorm, rope, attention, elementwise,
// embedding, history). Written by src/gpu/kernels/tokens.ts; see there for the layout.
//
// A step records one or more "sub-steps" (the first over the batch's tokens, then one per
// lookahead decode step); each dispatch reads its sub-step's StepInfo from a uniform slot.

struct StepInfo {
  n_tokens: u32,     // tokens fed in this sub-step
  token_base: u32,   // index of its first TokenRecord in the token table
  n_rows: u32,       // rows whose logits are computed (the rows that sample)
  row_base: u32,     // index of its first entry in the row table
}

// One fed token. `id` is FROM_LAST_SAMPLED when the token is the one sampled last for
// `slot`, which only the device knows. `seq` = index of the token within its entry, with
// bit 31 set on the entry's last token (the history kernel bumps the count there).
// `kv_row` = the pool row where the token's K and V go: its page (from the sequence's
// page table) · PAGE_SIZE + pos % PAGE_SIZE (kv-pool.wgsl).
struct TokenRecord {
  id: u32,
  slot: u32,
  pos: u32,
  seq: u32,
  kv_row: u32,
}

const FROM_LAST_SAMPLED: u32 = 0xFFFFFFFFu;
const LAST_IN_ENTRY: u32 = 0x80000000u;
