/**
 * The per-slot penalty history ring on the device (shaders/history.wgsl), appended to by
 * every fed token and read by the device sampler's penalties.
 *
 * Layout: one storage buffer of u32, per slot `HISTORY_CAP + 1` words starting at word
 * `slot * (HISTORY_CAP + 1)`: word 0 = the count of tokens appended so far (monotonic,
 * never wraps in practice), word `1 + (n % HISTORY_CAP)` = the n-th token appended.
 * The last min(count, HISTORY_CAP) tokens are thus always available.
 *
 * ```ts
 * const history = new HistoryKernel(ctx);
 * const buffer = createHistoryBuffer(ctx, maxSlots);
 * history.record(step, history.bind({ tokens, lastSampled, history: buffer, step: info }));
 * resetHistorySlot(ctx, buffer, slot);                 // count = 0 (queued write)
 * ```
 */
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { GpuStep } from "../step.ts";
import { ModelKernel } from "./kernel.ts";

/** Tokens each slot's ring holds. */
export const HISTORY_CAP = 1024;

/** u32 words per slot: the count, then the ring. */
export const HISTORY_SLOT_WORDS = HISTORY_CAP + 1;

const WG = 256;

/** The history append variant. */
export function historyVariant(): KernelVariant {
  return { name: `history_cap${HISTORY_CAP}`, file: "history.wgsl", defines: { CAP: HISTORY_CAP, WG } };
}

/** A zeroed history buffer for `slots` slots. */
export function createHistoryBuffer(ctx: GpuContext, slots: number): GPUBuffer {
  return ctx.allocator.createBuffer({
    label: "penalty history",
    size: slots * HISTORY_SLOT_WORDS * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
  });
}

/** Queues a write that empties `slot`'s history (count = 0). */
export function resetHistorySlot(ctx: GpuContext, history: GPUBuffer, slot: number): void {
  ctx.allocator.writeBuffer(history, slot * HISTORY_SLOT_WORDS * 4, new Uint32Array([0]));
}

/**
 * Queues a write that sets `slot`'s history to `tokens` (count = tokens.length, the ring
 * holding the last HISTORY_CAP of them where the append kernel would have put them): the
 * tokens of a reused prefix, which are never fed again.
 */
export function seedHistorySlot(ctx: GpuContext, history: GPUBuffer, slot: number, tokens: readonly number[]): void {
  if (tokens.length === 0) return resetHistorySlot(ctx, history, slot);
  const words = new Uint32Array(HISTORY_SLOT_WORDS);
  words[0] = tokens.length;
  for (let n = Math.max(0, tokens.length - HISTORY_CAP); n < tokens.length; n++) words[1 + (n % HISTORY_CAP)] = tokens[n]!;
  ctx.allocator.writeBuffer(history, slot * HISTORY_SLOT_WORDS * 4, words);
}

/** Buffers of the append. */
export interface HistoryBindings {
  /** Token table. */
  readonly tokens: GPUBuffer;
  /** i32 per slot: the id sampled last. */
  readonly lastSampled: GPUBuffer;
  readonly history: GPUBuffer;
  readonly step: GPUBufferBinding;
}

/** The append kernel. */
export class HistoryKernel extends ModelKernel {
  constructor(ctx: GpuContext) {
    super(ctx, historyVariant());
  }

  /** A reusable bind group. */
  bind(b: HistoryBindings, label = "history"): GPUBindGroup {
    return this.bindGroup(label, [b.tokens, b.lastSampled, b.history, b.step]);
  }

  /** Records the append of the sub-step's tokens (one work-group). */
  record(step: GpuStep, group: GPUBindGroup): void {
    this.dispatch(step, group, [1]);
  }
}
