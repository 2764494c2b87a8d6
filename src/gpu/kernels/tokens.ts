/**
 * The per-step tables the model kernels read (shaders/tokens.wgsl): the token table (one
 * record per fed token), the row table (which token rows get logits) and the StepInfo
 * uniform of each sub-step.
 *
 * A step runs one or more sub-steps in one recording: the batch itself, then each
 * lookahead decode step. Their tables are concatenated; each sub-step's StepInfo (its own
 * 256-byte uniform slot) says where its part starts, so bind groups made once per sub-step
 * index can be reused for every step.
 *
 * ```ts
 * const table = new DataView(new ArrayBuffer(n * TOKEN_RECORD_BYTES));
 * writeTokenRecord(table, 0, { id: 17, slot: 0, pos: 0, seq: 0, last: false, kvRow: 32 });
 * writeTokenRecord(table, 1, { id: FROM_LAST_SAMPLED, slot: 1, pos: 9, seq: 0, last: true, kvRow: 9 });
 * writeStepInfo(info, k * slotBytes, { nTokens: 2, tokenBase: 0, nRows: 1, rowBase: 0 });
 * ```
 */

/** Bytes of one TokenRecord (5 × u32). */
export const TOKEN_RECORD_BYTES = 20;

/** Bytes of StepInfo (4 × u32); each sits in its own uniform-aligned slot. */
export const STEP_INFO_BYTES = 16;

/** A token id meaning "the id sampled last for this slot" (resolved on the device). */
export const FROM_LAST_SAMPLED = 0xffffffff;

/** Flag on `seq` of an entry's last token. */
const LAST_IN_ENTRY = 0x80000000;

/** One fed token. */
export interface TokenRecord {
  /** Token id, or {@link FROM_LAST_SAMPLED}. */
  readonly id: number;
  readonly slot: number;
  readonly pos: number;
  /** Index of the token within its entry (its offset from the slot's history count). */
  readonly seq: number;
  /** The entry's last token: the history kernel bumps the slot's count there. */
  readonly last: boolean;
  /**
   * Row of the KV pool that receives the token's K and V: page·pageSize + pos % pageSize,
   * with the page from the sequence's page table (shaders/kv-pool.wgsl).
   */
  readonly kvRow: number;
}

/** Writes record `index` of a token table. */
export function writeTokenRecord(view: DataView, index: number, record: TokenRecord): void {
  const o = index * TOKEN_RECORD_BYTES;
  view.setUint32(o, record.id >>> 0, true);
  view.setUint32(o + 4, record.slot, true);
  view.setUint32(o + 8, record.pos, true);
  view.setUint32(o + 12, (record.seq | (record.last ? LAST_IN_ENTRY : 0)) >>> 0, true);
  view.setUint32(o + 16, record.kvRow, true);
}

/** Where one sub-step's part of the tables lies. */
export interface StepInfo {
  /** Tokens fed in the sub-step. */
  readonly nTokens: number;
  /** Index of its first token record. */
  readonly tokenBase: number;
  /** Rows whose logits are computed. */
  readonly nRows: number;
  /** Index of its first row-table entry. */
  readonly rowBase: number;
}

/** Writes a StepInfo at byte `offset`. */
export function writeStepInfo(view: DataView, offset: number, info: StepInfo): void {
  view.setUint32(offset, info.nTokens, true);
  view.setUint32(offset + 4, info.tokenBase, true);
  view.setUint32(offset + 8, info.nRows, true);
  view.setUint32(offset + 12, info.rowBase, true);
}

/** A uniform binding of the StepInfo in slot `index` of `buffer`. */
export function stepInfoBinding(buffer: GPUBuffer, index: number, slotBytes: number): GPUBufferBinding {
  return { buffer, offset: index * slotBytes, size: STEP_INFO_BYTES };
}

/** Formats a number as a WGSL f32 literal (defines such as EPS). */
export function wgslFloat(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`${value} is not a finite WGSL float`);
  return value.toExponential();
}
