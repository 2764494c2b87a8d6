/**
 * Matrix kernels over quantized weights (shaders/matvec.wgsl, shaders/matmul.wgsl,
 * shaders/quant.wgsl), for every type in GPU_WEIGHT_LAYOUTS.
 *
 * ```ts
 * const mk = new MatrixKernels(ctx);
 * await mk.prepare([wq, wk, wv], { bias: true });      // compile variants before recording
 * mk.matvec(step, wq, x, q);                          // q[rows]     = W · x
 * mk.matvec(step, wq, x, q, { bias: bq });            //            + bias
 * mk.matmul(step, wq, xs, qs, n);                     // qs[n×rows] = xs[n×cols] · Wᵀ
 * mk.matmul(step, wq, xs, qs, n, { xOffset, xStride, yOffset, yStride });
 * ```
 *
 * Buffers hold f32. Offsets and strides count f32 elements; by default X rows are `cols`
 * apart and Y rows `rows` apart. `weightRows(w, first, count)` is a row range of a weight
 * that products read in place (a fused `attn_qkv` as Q, K and V). A weight split into parts (weights.ts) becomes one dispatch
 * per part, each writing its own row range of Y. A buffer larger than the device's storage
 * binding limit is bound through a window around the elements a dispatch touches.
 *
 * Which kernel `matmul` records depends on n:
 * - n = 1: the matvec (matvec.wgsl with one input row, NB = 1; by default matvec-lanes.wgsl
 *   on lavapipe and matvec-blocks.wgsl on other adapters, for the types and sizes they take).
 * - 2 ≤ n ≤ `batchMax` (default 32): the same kernel with NB = 2, 4 or 8 input rows per
 *   work-group ("small batch": several sequences decoded together). Each work-group decodes
 *   each weight chunk of its rows once and applies it to its NB input rows; n > 8 takes
 *   ceil(n / 8) work-groups per weight rows. The 64×64 tiles of matmul.wgsl would compute
 *   (and on lavapipe pay for) 64 input rows whatever n is.
 * - n > `batchMax`: the tiled matmul (prefill), which reuses each decoded weight 64 times
 *   from work-group memory.
 *
 * On lavapipe (`matvecShape` "auto" there, or "lanes" anywhere) products take kernels
 * shaped for a CPU instead: a weight row per SIMD lane, every lane reading the same x
 * (matvec-lanes.wgsl for n = 1, matmul-lanes.wgsl with 8 input rows per work-group for
 * n ≥ 2), where the GPU shapes above ran 2–8× slower.
 */
import { GpuError, InvalidArgumentError } from "../../errors.ts";
import { GGMLType, ggmlTypeName } from "../../gguf/ggml-type.ts";
import { BindGroupCache } from "../bind-cache.ts";
import { type GpuContext, isLavapipe } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import { splitWorkgroups, type GpuStep } from "../step.ts";
import { CHUNK_VALUES, type GpuWeight, type GpuWeightPart } from "../weights.ts";

/** The products of this module: one input row (`matvec`), or several (`matmul`). */
export type MatrixFamily = "matvec" | "matmul";

/**
 * The kernel a product records, one per shader file:
 * - `matvec` (matvec.wgsl): rows per work-group, threads over 16-value chunks; any type and
 *   x placement; with `batchRows` > 1 the small-batch kernel (several input rows).
 * - `matvec-blocks` (matvec-blocks.wgsl): one input row on GPUs, whole quant blocks per
 *   thread step with 16-byte loads.
 * - `matvec-lanes` (matvec-lanes.wgsl): one input row on CPU adapters, a weight row per
 *   SIMD lane, 8 per lane.
 * - `matmul` (matmul.wgsl): 64×64 tiles, for prompts.
 * - `matmul-lanes` (matmul-lanes.wgsl): several input rows on CPU adapters, 4 weight rows
 *   per lane, 8 input rows per work-group.
 */
export type MatrixKernel = "matvec" | "matvec-blocks" | "matvec-lanes" | "matmul" | "matmul-lanes";

/** Typed key of a matrix kernel variant. */
export interface MatrixKernelKey {
  readonly kernel: MatrixKernel;
  readonly type: GGMLType;
  readonly bias: boolean;
  /** Float weights whose `cols` is not a multiple of 16 (x is read with bounds checks). */
  readonly padCols: boolean;
  /** matvec, matvec-blocks: threads per work-group and rows per work-group. */
  readonly workgroupSize: number;
  readonly rowsPerWorkgroup: number;
  /** matvec, matvec-blocks: reduce with subgroup operations. */
  readonly subgroups: boolean;
  /**
   * matvec only: input rows per work-group (NB of matvec.wgsl); absent or 1 for the
   * single-row matvec, more for the small-batch kernel that `matmul` records for small n.
   */
  readonly batchRows?: number;
}

/** Types matvec-lanes.wgsl decodes. */
const LANES_TYPES: ReadonlySet<GGMLType> = new Set([
  GGMLType.F32,
  GGMLType.F16,
  GGMLType.Q4_0,
  GGMLType.Q5_0,
  GGMLType.Q8_0,
  GGMLType.Q4_K,
  GGMLType.Q6_K,
  GGMLType.IQ4_NL,
]);
/** matvec-lanes.wgsl's threads per work-group and rows per thread (8–64 threads measured alike). */
const LANES_WG = 32;
const LANES_ROWS = 8;

/** matmul-lanes.wgsl's threads per work-group, weight rows per thread and input rows per work-group. */
const LANES_MM_WG = 32;
const LANES_MM_ROWS = 4;
const LANES_MM_N = 8;

/** Types matvec-blocks.wgsl decodes, with the multiple of `cols` each needs. */
const BLOCKS_COLS: ReadonlyMap<GGMLType, number> = new Map([
  [GGMLType.F16, 64],
  [GGMLType.Q4_0, 64],
  [GGMLType.Q8_0, 64],
  // 5-word blocks: 4 of them make whole vec4s per row.
  [GGMLType.Q5_0, 128],
  [GGMLType.Q4_K, 256],
  [GGMLType.Q6_K, 256],
]);
/** Values per thread step of matvec-blocks.wgsl. */
const BLOCKS_UNIT = 64;
/** Fewest matvec-blocks threads per work-group: one NVIDIA warp (rows of few units use fewer threads). */
const MIN_BLOCKS_THREADS = 32;

/** The variant (name, file, defines) of a key. */
export function matrixVariant(key: MatrixKernelKey): KernelVariant {
  const typeName = ggmlTypeName(key.type);
  const base = { [typeName]: true, BIAS: key.bias };
  const bias = key.bias ? "_bias" : "";
  const sg = key.subgroups ? "_sg" : "";
  switch (key.kernel) {
    case "matmul":
      return { name: `matmul_${typeName}${bias}`, file: "matmul.wgsl", defines: base };
    case "matmul-lanes":
      return { name: `matmul_${typeName}_lanes_wg${LANES_MM_WG}${bias}`, file: "matmul-lanes.wgsl", defines: { ...base, WG: LANES_MM_WG } };
    case "matvec-lanes":
      return {
        name: `matvec_${typeName}_lanes_wg${LANES_WG}_rl${LANES_ROWS}${bias}`,
        file: "matvec-lanes.wgsl",
        defines: { ...base, WG: LANES_WG, RL: LANES_ROWS, NB: 1 },
      };
    case "matvec-blocks":
      return {
        name: `matvec_${typeName}_blocks_wg${key.workgroupSize}_r${key.rowsPerWorkgroup}${bias}${sg}`,
        file: "matvec-blocks.wgsl",
        defines: { ...base, WG: key.workgroupSize, ROWS: key.rowsPerWorkgroup, SUBGROUPS: key.subgroups },
      };
    case "matvec": {
      const batchRows = key.batchRows ?? 1;
      const nb = batchRows > 1 ? `_b${batchRows}` : "";
      return {
        name: `matvec_${typeName}_wg${key.workgroupSize}_r${key.rowsPerWorkgroup}${nb}${bias}${key.padCols ? "_pad" : ""}${sg}`,
        file: "matvec.wgsl",
        defines: {
          ...base,
          WG: key.workgroupSize,
          ROWS: key.rowsPerWorkgroup,
          NB: batchRows,
          PAD_COLS: key.padCols,
          SUBGROUPS: key.subgroups,
        },
      };
    }
  }
}

/**
 * How a row-shaped kernel (all but the tiles) covers a product: weight rows and input rows
 * per work-group, whether it reads x as vec4 only, and whether it binds x as f32 too.
 */
function rowGeometry(key: MatrixKernelKey): { rows: number; inputRows: number; vec4Only: boolean; bindsX: boolean } {
  switch (key.kernel) {
    case "matvec-lanes":
      return { rows: LANES_WG * LANES_ROWS, inputRows: 1, vec4Only: true, bindsX: false };
    case "matmul-lanes":
      return { rows: LANES_MM_WG * LANES_MM_ROWS, inputRows: LANES_MM_N, vec4Only: true, bindsX: false };
    case "matvec-blocks":
      return { rows: key.rowsPerWorkgroup, inputRows: 1, vec4Only: true, bindsX: false };
    default:
      return { rows: key.rowsPerWorkgroup, inputRows: key.batchRows ?? 1, vec4Only: false, bindsX: true };
  }
}

/** Options of {@link MatrixKernels}. */
export interface MatrixKernelsOptions {
  /**
   * Most matvec threads per work-group (power of two); default 64. Rows of few chunks use
   * fewer (down to 16), so that each thread sums at least 4 chunks before the reduction.
   */
  matvecWorkgroupSize?: number;
  /** matvec rows per work-group; default 4 (x is loaded once for all of them). */
  matvecRows?: number;
  /** Use subgroup reductions when the device has them; default true. */
  subgroups?: boolean;
  /**
   * Single-row matvec shape: `lanes` (a row per invocation, matvec-lanes.wgsl), `workgroup`
   * (rows per work-group, matvec.wgsl), `blocks` (rows per work-group in whole quant blocks,
   * matvec-blocks.wgsl, for F16 Q4_0 Q5_0 Q8_0 Q4_K Q6_K with x vec4-aligned and cols a
   * multiple of 64, 128 for Q5_0, 256 for the K types; other products take `workgroup`), or
   * `auto` (default): lanes on Mesa's lavapipe, where it ran the priority types 1.7–4×
   * faster (lanes there read x at the same address, which its SIMD code loads once instead
   * of lane by lane), blocks elsewhere (on a GPU a row per invocation does not coalesce its
   * weight reads).
   */
  matvecShape?: "auto" | "lanes" | "workgroup" | "blocks";
  /**
   * Largest n that `matmul` records with the small-batch kernel instead of 64×64 tiles;
   * default {@link DEFAULT_BATCH_MAX}. 1 turns the small-batch kernel off.
   */
  batchMax?: number;
  /**
   * Most input rows per work-group of the small-batch kernel (a power of two); default
   * {@link DEFAULT_BATCH_ROWS}. A product of n ≤ this uses the smallest power of two ≥ n.
   */
  batchRows?: number;
}

/** Placement of one product's operands. Offsets and strides are in f32 elements. */
export interface MatrixOptions {
  /** Added to each output row (`rows` f32 from `biasOffset`). */
  bias?: GPUBuffer;
  biasOffset?: number;
  xOffset?: number;
  yOffset?: number;
}

/** Placement for {@link MatrixKernels.matmul}. */
export interface MatmulOptions extends MatrixOptions {
  /** Elements between rows of X; default `weight.cols`. */
  xStride?: number;
  /** Elements between rows of Y; default `weight.rows`. */
  yStride?: number;
}

/**
 * Rows [first, first + count) of `weight` as a weight of their own, reading the same
 * buffers (each part's `rowBase` says where its rows start): phi3's fused `attn_qkv` is
 * read as Q, K and V, and its `ffn_up` as gate and up, without a copy. The view owns no
 * buffer: destroy the weight it came from, never the view.
 */
export function weightRows(weight: GpuWeight, first: number, count: number, name = `${weight.name}[rows ${first}..${first + count})`): GpuWeight {
  if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 1 || first + count > weight.rows) {
    throw new InvalidArgumentError("rows", `${weight.name} has ${weight.rows} rows; rows [${first}, ${first + count}) are not a range of them`);
  }
  const parts: GpuWeightPart[] = [];
  for (const part of weight.parts) {
    const from = Math.max(first, part.firstRow);
    const to = Math.min(first + count, part.firstRow + part.rows);
    if (from >= to) continue;
    const rows = to - from;
    parts.push({
      buffer: part.buffer,
      firstRow: from - first,
      rows,
      scaleWord: part.scaleWord,
      // The bytes its products read, for bandwidth accounting.
      byteLength: Math.round((part.byteLength * rows) / part.rows),
      rowBase: (part.rowBase ?? 0) + from - part.firstRow,
    });
  }
  return { ...weight, name, rows: count, parts, byteLength: parts.reduce((sum, p) => sum + p.byteLength, 0) };
}

/** Tile sizes of matmul.wgsl (TN × TM outputs per work-group). */
const MATMUL_TILE_ROWS = 64;
const MATMUL_TILE_N = 64;

/**
 * Default largest n for the small-batch kernel. On lavapipe (1024×1024 Q8_0 and Q4_K, CPU
 * ms per call) it beats the tiles at every n up to 64: 2.3–3.0 against 105 at n = 2,
 * 12–13 against 107 at n = 16, 24–26 against 107 at n = 32, 47–52 against 110 at n = 64.
 * Its cost grows with n while the tiles' is flat up to 64, and on a GPU each of its
 * work-groups reads all n input rows for only 4 weight rows, where a tile reuses each decoded
 * weight 64 times from work-group memory. 32 keeps the tiles for batches that fill at least
 * half a tile (not measured on a GPU).
 */
export const DEFAULT_BATCH_MAX = 32;
/**
 * Default most input rows per small-batch work-group: 8 × 4 weight rows = 32 sums per
 * thread, beside 4 decoded 16-value chunks (registers on a GPU).
 */
export const DEFAULT_BATCH_ROWS = 8;
/** Fewest matvec threads per work-group (see {@link MatrixKernelsOptions.matvecWorkgroupSize}). */
const MIN_MATVEC_THREADS = 16;
/** Chunks each matvec thread should sum before the reduction, where rows are long enough. */
const CHUNKS_PER_THREAD = 4;

/** Records matrix-vector and matrix-matrix products into a {@link GpuStep}. */
export class MatrixKernels {
  readonly ctx: GpuContext;
  private readonly workgroupSize: number;
  private readonly rowsPerWorkgroup: number;
  private readonly subgroups: boolean;
  private readonly batchMax: number;
  private readonly batchRows: number;
  private readonly lanes: boolean;
  private readonly blocks: boolean;
  /** Bind groups of the matvec and small-batch products, made once (decode records the same ones every token). */
  private readonly bindings: BindGroupCache;

  constructor(ctx: GpuContext, options: MatrixKernelsOptions = {}) {
    this.ctx = ctx;
    this.bindings = new BindGroupCache(ctx);
    const shape = options.matvecShape ?? "auto";
    this.lanes = shape === "lanes" || (shape === "auto" && isLavapipe(ctx));
    this.blocks = shape === "blocks" || (shape === "auto" && !this.lanes);
    this.workgroupSize = options.matvecWorkgroupSize ?? 64;
    this.rowsPerWorkgroup = options.matvecRows ?? 4;
    this.subgroups = (options.subgroups ?? true) && ctx.features.subgroups;
    this.batchMax = options.batchMax ?? DEFAULT_BATCH_MAX;
    this.batchRows = options.batchRows ?? DEFAULT_BATCH_ROWS;
    const isPow2 = (v: number) => Number.isInteger(v) && v >= 1 && (v & (v - 1)) === 0;
    const wg = this.workgroupSize;
    if (!isPow2(wg) || wg > ctx.limits.maxComputeInvocationsPerWorkgroup) {
      throw new InvalidArgumentError("matvecWorkgroupSize", `${wg} must be a power of two ≤ ${ctx.limits.maxComputeInvocationsPerWorkgroup}`);
    }
    if (!isPow2(this.batchRows)) throw new InvalidArgumentError("batchRows", `${this.batchRows} must be a power of two`);
    for (const [what, value] of [["matvecRows", this.rowsPerWorkgroup], ["batchMax", this.batchMax]] as const) {
      if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(what, `${value} must be a positive integer`);
    }
    // matvec.wgsl keeps (WG + 1) partial sums per output in work-group memory.
    const nb = this.batchMax > 1 ? this.batchRows : 1;
    const storage = (wg + 1) * this.rowsPerWorkgroup * nb * 4;
    if (storage > ctx.limits.maxComputeWorkgroupStorageSize) {
      throw new GpuError(
        "LIMIT_TOO_LOW",
        `matvec work-group storage (${wg} + 1)×${this.rowsPerWorkgroup}×${nb}×4 = ${storage} bytes exceeds maxComputeWorkgroupStorageSize ${ctx.limits.maxComputeWorkgroupStorageSize}`,
      );
    }
  }

  /** Frees the cached bind groups' parameter buffers. */
  destroy(): void {
    this.bindings.destroy();
  }

  /**
   * The key of the kernel a product of this weight records, x aligned to 4 f32 (where it is
   * not, `recordRows` falls back to matvec.wgsl): for `matvec`, one input row, or with
   * `batchRows` > 1 the small-batch kernel; for `matmul`, the prompt kernel (tiles, or the
   * lanes kernel on CPU adapters).
   */
  key(family: MatrixFamily, weight: GpuWeight, bias: boolean, batchRows = 1): MatrixKernelKey {
    const base = {
      type: weight.type,
      bias,
      padCols: weight.cols % CHUNK_VALUES !== 0,
      workgroupSize: this.matvecThreads(weight),
      rowsPerWorkgroup: this.rowsPerWorkgroup,
      subgroups: this.subgroups,
    };
    if (family === "matmul") {
      const kernel = this.lanes && weight.cols % CHUNK_VALUES === 0 ? "matmul-lanes" : "matmul";
      return { ...base, kernel, padCols: false, workgroupSize: this.workgroupSize, subgroups: false };
    }
    if (batchRows > 1) return { ...base, kernel: "matvec", batchRows };
    if (this.lanesFit(weight)) return { ...base, kernel: "matvec-lanes" };
    if (this.blocksFit(weight)) return { ...base, kernel: "matvec-blocks", workgroupSize: this.blocksThreads(weight) };
    return { ...base, kernel: "matvec" };
  }

  /** Whether a single-row product of this weight takes matvec-blocks.wgsl (see `matvecShape`). */
  private blocksFit(weight: GpuWeight): boolean {
    const multiple = BLOCKS_COLS.get(weight.type);
    return this.blocks && multiple !== undefined && weight.cols % multiple === 0;
  }

  /**
   * Threads per matvec-blocks work-group: the most allowed, halved (down to 32) while some
   * would get no 64-value unit of a row: 2048 columns are 32 units.
   */
  private blocksThreads(weight: GpuWeight): number {
    let wg = this.workgroupSize;
    while (wg > MIN_BLOCKS_THREADS && wg * BLOCKS_UNIT > weight.cols) wg >>= 1;
    return wg;
  }

  /** Whether a single-row product of this weight takes matvec-lanes.wgsl (see `matvecShape`). */
  private lanesFit(weight: GpuWeight): boolean {
    if (!this.lanes || !LANES_TYPES.has(weight.type) || weight.cols % CHUNK_VALUES !== 0) return false;
    // Q5_0 blocks are 5 words: a row is whole vec4s only when blocksPerRow % 4 == 0.
    if (weight.type === GGMLType.Q5_0) return weight.cols % 128 === 0;
    // Its other 32-value types read a row as whole pairs of blocks (16-byte words of quants).
    const pairedBlocks: readonly GGMLType[] = [GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.IQ4_NL];
    return !pairedBlocks.includes(weight.type) || weight.cols % 64 === 0;
  }

  /**
   * Compiles (checked) the variants these weights need: matvec and matmul by default, with
   * and without bias when `bias` is set; pass `families` to choose one. "matmul" covers
   * every kernel `matmul` may record for n ≥ 2 (the small-batch sizes and the tiles).
   */
  async prepare(weights: Iterable<GpuWeight>, options: { bias?: boolean; families?: readonly MatrixFamily[] } = {}): Promise<void> {
    const variants = new Map<string, KernelVariant>();
    for (const weight of weights) {
      for (const family of options.families ?? (["matvec", "matmul"] as const)) {
        for (const bias of options.bias ? [false, true] : [false]) {
          const keys = [this.key(family, weight, bias)];
          if (family === "matmul") {
            // matmul-lanes.wgsl needs x at multiples of 4 f32; other placements take the tiles.
            if (keys[0]!.kernel === "matmul-lanes") keys.push({ ...keys[0]!, kernel: "matmul" });
            for (const nb of this.batchSizes()) keys.push(this.key("matvec", weight, bias, nb));
          }
          for (const key of keys) {
            const variant = matrixVariant(key);
            variants.set(variant.name, variant);
          }
        }
      }
    }
    await Promise.all([...variants.values()].map((v) => this.ctx.pipelines.getAsync(v)));
  }

  /** y[yOffset + r] = Σ_k W[r, k] · x[xOffset + k] (+ bias[biasOffset + r]) for every row r. */
  matvec(step: GpuStep, weight: GpuWeight, x: GPUBuffer, y: GPUBuffer, options: MatrixOptions = {}): void {
    this.recordRows(step, this.key("matvec", weight, options.bias !== undefined), weight, x, y, 1, options);
  }

  /**
   * Y[yOffset + m·yStride + r] = Σ_k X[xOffset + m·xStride + k] · W[r, k] (+ bias[biasOffset + r])
   * for m < n and every row r.
   */
  matmul(step: GpuStep, weight: GpuWeight, x: GPUBuffer, y: GPUBuffer, n: number, options: MatmulOptions = {}): void {
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("n", `matmul of ${weight.name}: n = ${n} must be a whole number ≥ 0`);
    if (n === 0) return;
    if (n === 1) {
      this.matvec(step, weight, x, y, options);
      return;
    }
    const bias = options.bias !== undefined;
    const key = this.key("matmul", weight, bias);
    const xAligned = (options.xOffset ?? 0) % 4 === 0 && (options.xStride ?? weight.cols) % 4 === 0;
    if (key.kernel === "matmul-lanes" && xAligned) {
      this.recordRows(step, key, weight, x, y, n, options);
      return;
    }
    if (n <= this.batchMax) {
      this.recordRows(step, this.key("matvec", weight, bias, this.batchRowsFor(n)), weight, x, y, n, options);
      return;
    }
    this.recordTiles(step, { ...key, kernel: "matmul" }, weight, x, y, n, options);
  }

  /** Records matmul.wgsl's 64×64 tiles over n input rows. */
  private recordTiles(step: GpuStep, key: MatrixKernelKey, weight: GpuWeight, x: GPUBuffer, y: GPUBuffer, n: number, options: MatmulOptions): void {
    const pipeline = this.ctx.pipelines.get(matrixVariant(key));
    const xOffset = options.xOffset ?? 0;
    const yOffset = options.yOffset ?? 0;
    const xStride = options.xStride ?? weight.cols;
    const yStride = options.yStride ?? weight.rows;
    const biasOffset = options.biasOffset ?? 0;
    const xWin = this.window(x, xOffset, (n - 1) * xStride + weight.cols, "x");
    for (const part of weight.parts) {
      const yWin = this.window(y, yOffset + part.firstRow, (n - 1) * yStride + part.rows, "y");
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: part.buffer } },
        { binding: 1, resource: xWin.resource },
        { binding: 2, resource: yWin.resource },
      ];
      let biasBase = 0;
      if (options.bias) {
        const bWin = this.window(options.bias, biasOffset + part.firstRow, part.rows, "bias");
        entries.push({ binding: 4, resource: bWin.resource });
        biasBase = bWin.base;
      }
      const params = new Uint32Array([
        part.rows,
        weight.chunksPerRow,
        weight.cols,
        weight.rowWords,
        part.scaleWord,
        weight.blocksPerRow,
        n,
        xWin.base,
        xStride,
        yWin.base,
        yStride,
        biasBase,
        part.rowBase ?? 0,
      ]);
      entries.push({ binding: 3, resource: step.params(params) });
      step.dispatch(pipeline, entries, [Math.ceil(part.rows / MATMUL_TILE_ROWS), Math.ceil(n / MATMUL_TILE_N)]);
    }
  }

  /**
   * Threads per matvec work-group for this weight: the most allowed, halved (down to 16)
   * while a thread would get fewer than 4 chunks of a row. Each thread's sums cost a fixed
   * reduction; with one chunk per thread (1024 columns, 64 threads) that cost rivals the
   * products themselves: on lavapipe 16 threads ran 1024×1024 Q8_0 and Q4_K matvecs in
   * about 0.7× the CPU time of 64. Rows of 4096 columns or more keep 64.
   */
  private matvecThreads(weight: GpuWeight): number {
    let wg = this.workgroupSize;
    while (wg > MIN_MATVEC_THREADS && wg * CHUNKS_PER_THREAD > weight.chunksPerRow) wg >>= 1;
    return wg;
  }

  /** NB of the small-batch variants `matmul` may record (see `batchRowsFor`). */
  private batchSizes(): number[] {
    const sizes: number[] = [];
    for (let nb = 2; nb <= this.batchRows && nb / 2 < this.batchMax; nb *= 2) sizes.push(nb);
    return sizes;
  }

  /** Input rows per small-batch work-group for n: the smallest power of two ≥ n, at most `batchRows`. */
  private batchRowsFor(n: number): number {
    let nb = 1;
    while (nb < n && nb < this.batchRows) nb *= 2;
    return nb;
  }

  /**
   * Records a row-shaped kernel (every one but the tiles) over n input rows. Kernels that
   * read x as vec4 only fall back to matvec.wgsl where x rows do not start at multiples of
   * 4 f32. Input rows a small-batch work-group does not fill cost nearly full price on
   * lavapipe, which runs the shader's uniform "is this row present" branches under masks
   * rather than skipping them (a variant for 8 rows cost the same at n = 2 as at n = 8).
   */
  private recordRows(step: GpuStep, wanted: MatrixKernelKey, weight: GpuWeight, x: GPUBuffer, y: GPUBuffer, n: number, options: MatmulOptions): void {
    const xOffset = options.xOffset ?? 0;
    const yOffset = options.yOffset ?? 0;
    // Strides are unused when n = 1.
    const xStride = n === 1 ? 0 : (options.xStride ?? weight.cols);
    const yStride = n === 1 ? 0 : (options.yStride ?? weight.rows);
    const biasOffset = options.biasOffset ?? 0;
    const xWin = this.window(x, xOffset, (n - 1) * xStride + weight.cols, "x");
    // Chunks that start at multiples of 4 f32 are read as vec4 (binding 5, the same range);
    // whole chunks only: a padded float row's last chunk reads past cols.
    const xVec4 = xWin.base % 4 === 0 && xStride % 4 === 0 && weight.cols % CHUNK_VALUES === 0;
    const key =
      rowGeometry(wanted).vec4Only && !xVec4
        ? { ...wanted, kernel: "matvec" as const, workgroupSize: this.matvecThreads(weight), ...(n > 1 ? { batchRows: this.batchRowsFor(n) } : {}) }
        : wanted;
    const geometry = rowGeometry(key);
    const pipeline = this.ctx.pipelines.get(matrixVariant(key));
    const maxGroups = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    for (const part of weight.parts) {
      const yWin = this.window(y, yOffset + part.firstRow, (n - 1) * yStride + part.rows, "y");
      const groups = splitWorkgroups(Math.ceil(part.rows / geometry.rows) * Math.ceil(n / geometry.inputRows), maxGroups);
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: part.buffer } },
        // Unread when !xVec4; the weight part stands in for x, which may then be shorter
        // than the 16 bytes an array<vec4<f32>> binding needs.
        { binding: 5, resource: xVec4 ? xWin.resource : { buffer: part.buffer } },
        { binding: 2, resource: yWin.resource },
      ];
      // Kernels reading x as vec4 only leave binding 1 out (an unused binding is an error with "auto" layouts).
      if (geometry.bindsX) entries.push({ binding: 1, resource: xWin.resource });
      let biasBase = 0;
      if (options.bias) {
        const bWin = this.window(options.bias, biasOffset + part.firstRow, part.rows, "bias");
        entries.push({ binding: 4, resource: bWin.resource });
        biasBase = bWin.base;
      }
      const params = new Uint32Array([
        part.rows,
        weight.chunksPerRow,
        weight.cols,
        weight.rowWords,
        part.scaleWord,
        weight.blocksPerRow,
        xWin.base,
        yWin.base,
        biasBase,
        groups[0],
        n,
        xStride,
        yStride,
        xVec4 ? 1 : 0,
        part.rowBase ?? 0,
      ]);
      // Cached for decode-sized products only: prompts of every length would fill the cache.
      const group = n <= this.batchMax ? this.bindings.get(pipeline, entries, params) : null;
      step.dispatch(pipeline, group ?? [...entries, { binding: 3, resource: step.params(params) }], groups);
    }
  }

  /**
   * A binding for f32 elements [first, first + count) of `buffer`: the whole buffer when it
   * fits in one storage binding, else an aligned window; `base` is `first` relative to it.
   */
  private window(buffer: GPUBuffer, first: number, count: number, what: string): { resource: GPUBufferBinding; base: number } {
    const end = (first + count) * 4;
    if (end > buffer.size) {
      throw new InvalidArgumentError(what, `buffer "${buffer.label}" has ${buffer.size} bytes, the product reads up to byte ${end}`);
    }
    const limit = this.ctx.limits.maxStorageBufferBindingSize;
    if (buffer.size <= limit) return { resource: { buffer }, base: first };
    const align = this.ctx.limits.minStorageBufferOffsetAlignment;
    const offset = Math.floor((first * 4) / align) * align;
    const size = end - offset;
    if (size > limit) {
      throw new GpuError("LIMIT_TOO_LOW", `${what} of buffer "${buffer.label}" spans ${size} bytes, more than one storage binding (${limit})`, {
        label: buffer.label,
        limit: "maxStorageBufferBindingSize",
        needed: size,
        available: limit,
      });
    }
    return { resource: { buffer, offset, size }, base: first - offset / 4 };
  }
}
