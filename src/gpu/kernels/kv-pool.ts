/**
 * How one layer's paged KV pool is laid out over storage bindings, and the defines and
 * bindings that shaders/kv-pool.wgsl (included by rope.wgsl and attention.wgsl) expects.
 *
 * A binding holds at most `maxStorageBufferBindingSize` bytes (128 MiB by default), so a
 * pool larger than that is split into up to {@link MAX_KV_BINDINGS} buffers of whole pages
 * each, for K and for V: row r (page·pageSize + offset) is row r % rowsPerBinding of buffer
 * ⌊r / rowsPerBinding⌋.
 *
 * ```ts
 * const layout = { pageSize: 32, rowsPerBinding: 4096, bindings: 2 };
 * kvPoolDefines(layout, true, "read");   // PAGE_SIZE, ROWS_PER_BINDING, KV_B2, …
 * ```
 */
import { InvalidArgumentError } from "../../errors.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { ShaderDefines } from "../shader-source.ts";
import type { BindingInput } from "./kernel.ts";

/** Most buffers (each for K and for V) one layer's pool may span. */
export const MAX_KV_BINDINGS = 4;

/** Binding number of K buffer b ≥ 1 in every shader (V is the next one); see kv-pool.wgsl. */
const FIRST_EXTRA_BINDING = 16;

/** One layer's pool as the kernels see it. */
export interface KvPoolLayout {
  /** Positions per page. */
  readonly pageSize: number;
  /** Rows (positions) each binding holds: a whole number of pages. */
  readonly rowsPerBinding: number;
  /** Buffers the pool spans, for K and for V (1 … MAX_KV_BINDINGS). */
  readonly bindings: number;
}

/** The part of a variant name that tells pool layouts apart. */
export function kvPoolName(p: KvPoolLayout): string {
  return p.bindings === 1 ? `ps${p.pageSize}` : `ps${p.pageSize}_rows${p.rowsPerBinding}x${p.bindings}`;
}

/** The defines of kv-pool.wgsl. */
export function kvPoolDefines(p: KvPoolLayout, kvF16: boolean, access: "read" | "read_write"): ShaderDefines {
  if (!Number.isInteger(p.bindings) || p.bindings < 1 || p.bindings > MAX_KV_BINDINGS) {
    throw new InvalidArgumentError("kvPool.bindings", `${p.bindings} is outside [1, ${MAX_KV_BINDINGS}]`);
  }
  return {
    KV_F16: kvF16,
    PAGE_SIZE: p.pageSize,
    ROWS_PER_BINDING: p.rowsPerBinding,
    KV_B2: p.bindings >= 2,
    KV_B3: p.bindings >= 3,
    KV_B4: p.bindings >= 4,
    KV_ACCESS: access,
    KV_WRITE: access === "read_write",
  };
}

/**
 * `list` (bindings by index, K and V buffer 0 already in place) with the pool's other
 * buffers at their fixed binding numbers.
 */
export function kvPoolBindings(
  list: readonly BindingInput[],
  p: KvPoolLayout,
  kPool: readonly GPUBuffer[],
  vPool: readonly GPUBuffer[],
  variant: KernelVariant,
): BindingInput[] {
  if (kPool.length !== p.bindings || vPool.length !== p.bindings) {
    throw new InvalidArgumentError("kPool", `${variant.name} takes ${p.bindings} K and V buffers, got ${kPool.length} and ${vPool.length}`);
  }
  const out: BindingInput[] = [...list];
  for (let b = 1; b < p.bindings; b++) {
    while (out.length < FIRST_EXTRA_BINDING + 2 * b) out.push(null);
    out[FIRST_EXTRA_BINDING + 2 * (b - 1)] = kPool[b]!;
    out[FIRST_EXTRA_BINDING + 2 * (b - 1) + 1] = vPool[b]!;
  }
  return out;
}
