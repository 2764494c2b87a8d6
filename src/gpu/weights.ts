/**
 * Weights on the GPU: quantized, repacked for aligned reads, split by rows when large.
 *
 * Design
 * - Weights stay in their GGUF type on the GPU; kernels dequantize as they read.
 * - GGUF blocks are 18/22/34/110/210 bytes for Q4_0/Q5_0/Q8_0/Q3_K/Q6_K: not multiples of
 *   4, so a block would start at any byte and every read would need two u32 loads and
 *   shifts. Those five types are exactly the ones whose block carries one 2-byte f16 scale
 *   `d` (first for the legacy types, last for the K types) beside a 4-byte-aligned rest.
 *   At upload we move each block's `d` into a separate f16 array after the quants
 *   ("split-scale" layout); every other byte keeps GGML's order. The other types
 *   (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K: 20/24/84/144/176 bytes) are already aligned and are
 *   uploaded byte for byte. Float types (F32, F16, BF16) are copied as they are, with each
 *   row padded with zeros to a multiple of 16 values when `cols` is not one.
 *   No dequantization happens at upload: the GPU holds exactly the GGUF bits, reordered.
 * - The quants of one row are contiguous (`rowWords` u32 words), rows one after another;
 *   the scales of the split types follow at `scaleWord` (u32 index), `blocksPerRow` f16
 *   values per row. Kernels read 16 values ("a chunk") at a time: half a 32-value block,
 *   or a sixteenth of a 256-value super-block (matching the K types' sub-blocks).
 * - A weight larger than `maxStorageBufferBindingSize` is split into parts of whole rows,
 *   each its own buffer, bound in its own dispatch (a 128256×2048 F16 embedding is 501 MiB;
 *   lavapipe and default WebGPU bindings stop at 128 MiB).
 *
 * ```ts
 * const w = await uploadWeight(ctx, { type: GGMLType.Q4_0, shape: [cols, rows], bytes }, "blk.0.attn_q.weight");
 * w.parts[0].buffer; w.parts[0].firstRow; w.parts[0].rows; w.rowWords; w.parts[0].scaleWord;
 * destroyWeight(ctx.allocator, w);
 * ```
 */
import { GGUFError, GpuError } from "../errors.ts";
import { yieldToEventLoop } from "../yield.ts";
import { BLOCK_LAYOUTS, GGMLType, ggmlTypeName, tensorByteLength } from "../gguf/ggml-type.ts";
import { alignTo, type GpuAllocator } from "./buffers.ts";
import type { GpuContext } from "./device.ts";

/** Values per kernel chunk (see the design note). */
export const CHUNK_VALUES = 16;

/** How one GGML type is laid out on the GPU. */
export interface GpuWeightLayout {
  readonly type: GGMLType;
  /** Values per block (1 for float types). */
  readonly blockValues: number;
  /** Bytes per block in GGUF. */
  readonly blockBytes: number;
  /** Byte offset of the f16 scale moved out of each block, or null when blocks are kept whole. */
  readonly splitScaleAt: number | null;
}

/** Types the GPU kernels run, with their layouts. */
export const GPU_WEIGHT_LAYOUTS: ReadonlyMap<GGMLType, GpuWeightLayout> = new Map(
  (
    [
      [GGMLType.F32, null],
      [GGMLType.F16, null],
      [GGMLType.BF16, null],
      [GGMLType.Q4_0, 0],
      [GGMLType.Q4_1, null],
      [GGMLType.Q5_0, 0],
      [GGMLType.Q5_1, null],
      [GGMLType.Q8_0, 0],
      [GGMLType.Q2_K, null],
      [GGMLType.Q3_K, 108],
      [GGMLType.Q4_K, null],
      [GGMLType.Q5_K, null],
      [GGMLType.Q6_K, 208],
      // 18-byte blocks with d first, as Q4_0; 136-byte super-blocks are already aligned.
      [GGMLType.IQ4_NL, 0],
      [GGMLType.IQ4_XS, null],
    ] as const
  ).map(([type, splitScaleAt]) => {
    const block = BLOCK_LAYOUTS.get(type);
    if (!block) throw new Error(`no block layout for ${type}`);
    const layout: GpuWeightLayout = { type, blockValues: block.blockSize, blockBytes: block.typeSize, splitScaleAt };
    return [type, layout] as const;
  }),
);

/** One buffer holding rows `[firstRow, firstRow + rows)` of a weight. */
export interface GpuWeightPart {
  readonly buffer: GPUBuffer;
  readonly firstRow: number;
  readonly rows: number;
  /** u32 index in `buffer` where the split-scale f16 array starts (0 for layouts without one). */
  readonly scaleWord: number;
  /** Bytes of `buffer`. */
  readonly byteLength: number;
  /**
   * Row of `buffer` that holds this part's first row (default 0): a row range of a fused
   * weight (phi3's `attn_qkv`) reads its rows where they lie, without a copy.
   */
  readonly rowBase?: number;
}

/** A matrix (or vector, `rows` = 1) on the GPU. */
export interface GpuWeight {
  readonly name: string;
  readonly type: GGMLType;
  /** Output dimension: GGUF `ne[1]` (times any higher dimensions). */
  readonly rows: number;
  /** Input dimension: GGUF `ne[0]`. */
  readonly cols: number;
  /** u32 words of quants per row. */
  readonly rowWords: number;
  /** GGML blocks per row (float types: padded columns). */
  readonly blocksPerRow: number;
  /** 16-value chunks per row (the kernels' unit of work along a row). */
  readonly chunksPerRow: number;
  readonly layout: GpuWeightLayout;
  readonly parts: readonly GpuWeightPart[];
  /** GPU bytes over all parts. */
  readonly byteLength: number;
}

/** A tensor as read from GGUF. */
export interface WeightSource {
  readonly type: GGMLType;
  /** GGUF `ne`: `[cols, rows, ...]`. */
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** Options of {@link uploadWeight}. */
export interface UploadWeightOptions {
  /** Defaults to `ctx.allocator`. */
  allocator?: GpuAllocator;
  /** Largest bytes per part; defaults to `ctx.limits.maxStorageBufferBindingSize` (tests lower it). */
  maxPartBytes?: number;
  /** Checked before each part and slice: a large tensor takes seconds on a software GPU. */
  signal?: AbortSignal;
  /** Parts above this many bytes are written in slices of about this size (default 16 MiB; tests lower it). */
  sliceBytes?: number;
}

/** Uploads a GGUF tensor, repacking and splitting as described above. */
export async function uploadWeight(
  ctx: GpuContext,
  info: WeightSource,
  name: string,
  options: UploadWeightOptions = {},
): Promise<GpuWeight> {
  const allocator = options.allocator ?? ctx.allocator;
  const plan = planWeight(info, name, Math.min(options.maxPartBytes ?? Infinity, ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize));
  const parts: GpuWeightPart[] = [];
  try {
    for (let firstRow = 0; firstRow < plan.rows; firstRow += plan.rowsPerPart) {
      options.signal?.throwIfAborted();
      const rows = Math.min(plan.rowsPerPart, plan.rows - firstRow);
      const scaleWord = rows * plan.rowWords;
      const byteLength = partBytes(plan, rows);
      const label = plan.rowsPerPart >= plan.rows ? name : `${name}[rows ${firstRow}..${firstRow + rows})`;
      const part = { firstRow, rows, byteLength, label };
      const buffer = await uploadPart(allocator, plan, info.bytes, part, options.sliceBytes ?? SLICE_BYTES, options.signal);
      parts.push({ buffer, firstRow, rows, scaleWord, byteLength });
    }
  } catch (error) {
    for (const part of parts) allocator.destroy(part.buffer);
    throw error;
  }
  return {
    name,
    type: info.type,
    rows: plan.rows,
    cols: plan.cols,
    rowWords: plan.rowWords,
    blocksPerRow: plan.blocksPerRow,
    chunksPerRow: plan.chunksPerRow,
    layout: plan.layout,
    parts,
    byteLength: parts.reduce((sum, part) => sum + part.byteLength, 0),
  };
}

/**
 * Parts larger than this are uploaded in slices, with the event loop let run and the abort
 * signal checked between them: on a software GPU one 100 MB part takes seconds of
 * synchronous work, and a Ctrl-C during a load must be heard within one.
 */
const SLICE_BYTES = 16 << 20;

/** Creates one part's buffer holding rows `[firstRow, firstRow + rows)` in the GPU layout. */
async function uploadPart(
  allocator: GpuAllocator,
  plan: WeightPlan,
  src: Uint8Array,
  part: { readonly firstRow: number; readonly rows: number; readonly byteLength: number; readonly label: string },
  sliceBytes: number,
  signal: AbortSignal | undefined,
): Promise<GPUBuffer> {
  const { firstRow, rows, byteLength, label } = part;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
  if (byteLength <= sliceBytes) {
    return allocator.createBufferFilled(label, byteLength, usage, (dst) => repackRows(plan, src, firstRow, rows, dst));
  }
  const buffer = await allocator.createBufferChecked({ label, size: byteLength, usage: usage | GPUBufferUsage.COPY_DST });
  try {
    // An even number of rows per slice keeps every scale offset a multiple of 4 bytes.
    const sliceRows = Math.max(2, 2 * Math.floor(sliceBytes / (2 * (byteLength / rows))));
    const scratch = new Uint8Array(partBytes(plan, sliceRows));
    const bodyStart = (row: number) => row * plan.rowWords * 4;
    const scaleStart = (row: number) => bodyStart(rows) + row * plan.blocksPerRow * 2;
    for (let from = 0; from < rows; from += sliceRows) {
      signal?.throwIfAborted();
      const n = Math.min(sliceRows, rows - from);
      scratch.fill(0); // float rows keep zero padding
      repackRows(plan, src, firstRow + from, n, scratch);
      const body = bodyStart(n);
      allocator.writeBuffer(buffer, bodyStart(from), scratch.subarray(0, body));
      if (plan.layout.splitScaleAt !== null) {
        allocator.writeBuffer(buffer, scaleStart(from), scratch.subarray(body, body + n * plan.blocksPerRow * 2));
      }
      await yieldToEventLoop();
    }
    signal?.throwIfAborted();
    return buffer;
  } catch (error) {
    allocator.destroy(buffer);
    throw error;
  }
}

/** Destroys the buffers of a weight. */
export function destroyWeight(allocator: GpuAllocator, weight: GpuWeight): void {
  for (const part of weight.parts) allocator.destroy(part.buffer);
}

/** How a tensor is laid out and split on the GPU (see {@link planWeight}). */
export interface WeightPlan {
  readonly layout: GpuWeightLayout;
  readonly rows: number;
  readonly cols: number;
  readonly blocksPerRow: number;
  readonly chunksPerRow: number;
  /** GGUF bytes per row. */
  readonly srcRowBytes: number;
  readonly rowWords: number;
  readonly rowsPerPart: number;
}

/** Checks a tensor against its type and computes its GPU layout and split. */
export function planWeight(info: WeightSource, name: string, maxPartBytes: number): WeightPlan {
  const layout = GPU_WEIGHT_LAYOUTS.get(info.type);
  if (!layout) throw new GpuError("GPU_UNSUPPORTED", `${name}: type ${ggmlTypeName(info.type)} has no GPU kernels`, { label: name });
  const cols = info.shape[0] ?? 1;
  const rows = info.shape.slice(1).reduce((a, b) => a * b, 1);
  let srcBytes: number;
  try {
    srcBytes = tensorByteLength(info.type, cols);
  } catch (cause) {
    throw new GGUFError("GGUF_TENSOR_SHAPE", `${String(cause)}`, { field: name }, { cause });
  }
  if (info.bytes.byteLength !== srcBytes * rows) {
    throw new GGUFError("GGUF_TENSOR_SIZE", `${info.bytes.byteLength} bytes given, shape [${info.shape.join(", ")}] of ${ggmlTypeName(info.type)} needs ${srcBytes * rows}`, { field: name });
  }
  const isFloat = layout.blockValues === 1;
  const paddedCols = isFloat ? alignTo(cols, CHUNK_VALUES) : cols;
  const blocksPerRow = paddedCols / layout.blockValues;
  const bodyBytes = layout.splitScaleAt === null ? layout.blockBytes : layout.blockBytes - 2;
  const rowWords = (blocksPerRow * bodyBytes) / 4;
  const plan = {
    layout,
    rows,
    cols,
    blocksPerRow,
    chunksPerRow: paddedCols / CHUNK_VALUES,
    srcRowBytes: srcBytes,
    rowWords,
    rowsPerPart: rows,
  };
  if (partBytes(plan, rows) <= maxPartBytes) return plan;
  // Bytes per row, counting the scales; 4 spare bytes cover the scale array's padding.
  const perRow = rowWords * 4 + (layout.splitScaleAt === null ? 0 : blocksPerRow * 2);
  const rowsPerPart = Math.floor((maxPartBytes - 4) / perRow);
  if (rowsPerPart < 1) {
    throw new GpuError("LIMIT_TOO_LOW", `${name}: one row needs ${perRow} bytes, a storage binding holds ${maxPartBytes}`, {
      label: name,
      limit: "maxStorageBufferBindingSize",
      needed: perRow,
      available: maxPartBytes,
    });
  }
  return { ...plan, rowsPerPart };
}

/** Bytes of one part, padded to 16: matvec-lanes.wgsl reads parts as whole vec4<u32>. */
function partBytes(plan: WeightPlan, rows: number): number {
  const scales = plan.layout.splitScaleAt === null ? 0 : rows * plan.blocksPerRow * 2;
  return alignTo(rows * plan.rowWords * 4 + scales, 16);
}

/** Writes rows `[firstRow, firstRow + rows)` of GGUF data into `dst` in the GPU layout. */
function repackRows(plan: WeightPlan, src: Uint8Array, firstRow: number, rows: number, dst: Uint8Array): void {
  const { layout, srcRowBytes, rowWords, blocksPerRow } = plan;
  const srcStart = firstRow * srcRowBytes;
  if (layout.splitScaleAt === null) {
    const dstRowBytes = rowWords * 4;
    if (dstRowBytes === srcRowBytes) {
      dst.set(src.subarray(srcStart, srcStart + rows * srcRowBytes));
      return;
    }
    // Float rows padded to whole chunks; the padding stays zero (mapped ranges start zeroed).
    for (let r = 0; r < rows; r++) {
      dst.set(src.subarray(srcStart + r * srcRowBytes, srcStart + (r + 1) * srcRowBytes), r * dstRowBytes);
    }
    return;
  }
  const at = layout.splitScaleAt;
  const blockBytes = layout.blockBytes;
  const bodyBytes = blockBytes - 2;
  const nBlocks = rows * blocksPerRow;
  const scaleStart = rows * rowWords * 4;
  for (let b = 0; b < nBlocks; b++) {
    const s = srcStart + b * blockBytes;
    const d = b * bodyBytes;
    // Body = the block without its 2 scale bytes at `at`. A byte loop: blocks are small, and
    // making two subarrays per block costs more than the copy itself.
    for (let k = 0; k < at; k++) dst[d + k] = src[s + k];
    for (let k = at + 2; k < blockBytes; k++) dst[d + k - 2] = src[s + k];
    dst[scaleStart + 2 * b] = src[s + at];
    dst[scaleStart + 2 * b + 1] = src[s + at + 1];
  }
}
