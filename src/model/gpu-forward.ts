/**
 * The forward pass on the GPU: the buffers it runs on (activations, paged KV pool,
 * per-step tables), its kernels, their bind groups, and the recording of one "sub-step"
 * (every layer over a set of tokens, then logits and sampling for some rows).
 *
 * One sub-step, for n tokens of any mix of slots and positions (each layer is its
 * architecture's op list, src/model/arch/, recorded as kernels by {@link gpuLayerSteps}):
 *   x = embed(tokens)                        ids FROM_LAST_SAMPLED resolved on the device
 *   history ring += tokens
 *   per layer:
 *     xb = rmsnorm(x [+= h]) · attn_norm     the residual add of the previous block fused in
 *     q, k, v = xb·Wqᵀ, xb·Wkᵀ, xb·Wvᵀ (+bias)
 *     q, K/V pool = rope(qknorm?(q)), rope(qknorm?(k)), v      at each token's pool row
 *     att = attention(q, pool)               causal over [0, pos] through the slot's page table
 *     h = att·Woᵀ;  xb = rmsnorm(x += h) · ffn_norm
 *     gate = silu(xb·Wgateᵀ) ⊙ (xb·Wupᵀ);  h = gate·Wdownᵀ
 *   xo = rmsnorm(x + h)[rows] · output_norm  only the rows that need logits
 *   logits = xo·Woutᵀ;  sampler(logits) → outIds, lastSampled
 *
 * Bind groups are made once per sub-step index (the StepInfo uniform slot they read) and
 * reused by every step; only the matrix products take their parameters from the step's
 * arena (kernels/matmul.ts).
 */
import { GpuError, ModelConfigError } from "../errors.ts";
import { type GpuContext, isLavapipe } from "../gpu/device.ts";
import { type AttentionGroups, AttentionKernel } from "../gpu/kernels/attention.ts";
import { type KvPoolLayout, MAX_KV_BINDINGS } from "../gpu/kernels/kv-pool.ts";
import { ElementwiseKernel } from "../gpu/kernels/elementwise.ts";
import { EmbeddingKernel } from "../gpu/kernels/embedding.ts";
import { createHistoryBuffer, HistoryKernel } from "../gpu/kernels/history.ts";
import { MatrixKernels, type MatrixKernelsOptions } from "../gpu/kernels/matmul.ts";
import { RmsNormKernel } from "../gpu/kernels/rmsnorm.ts";
import { RopeKernel, ropeFreqTable } from "../gpu/kernels/rope.ts";
import { type DeviceSampler, SAMPLE_ROW_BYTES } from "../gpu/kernels/sampling-hook.ts";
import { STEP_INFO_BYTES, stepInfoBinding, TOKEN_RECORD_BYTES } from "../gpu/kernels/tokens.ts";
import { type GpuStep, ParamArena } from "../gpu/step.ts";
import { architecture, type LayerOp, type LayerTensorKey } from "./arch/index.ts";
import type { ModelConfig } from "./config.ts";
import { type GpuLayerWeights, type GpuModelWeights, layerMatrix, layerVector } from "./gpu-weights.ts";
import { ropeFrequencies, sequenceRopeDivisors, slidingRopeFrequencies } from "./reference-rope.ts";

/** Element type of the KV cache. */
export type KvCacheType = "f32" | "f16";

/** Sizes of a {@link GpuForward}. */
export interface GpuForwardSizes {
  readonly maxSlots: number;
  /** Most positions of one sequence (its page table holds ceil(contextLength / pageSize) pages). */
  readonly contextLength: number;
  /** Positions per page of the KV pool. */
  readonly pageSize: number;
  /** Pages of the KV pool. */
  readonly pageCount: number;
  /** Most tokens in one sub-step. */
  readonly maxTokens: number;
  /** Most rows that sample in one sub-step (at most one per slot). */
  readonly maxSampleRows: number;
  /** Rows of the logits buffer (≥ maxSampleRows; `logits()` reads this many positions at once). */
  readonly logitRows: number;
  readonly kvCacheType: KvCacheType;
  /** Sub-steps the tables are first sized for (they grow on demand). */
  readonly subSteps: number;
}

/** Activations, each (rows, width) f32 row-major. */
interface Activations {
  readonly x: GPUBuffer; // (maxTokens, nEmbd) residual stream
  readonly xb: GPUBuffer; // (maxTokens, nEmbd) normed input of a block
  readonly q: GPUBuffer; // (maxTokens, nHeads·headDim)
  readonly k: GPUBuffer; // (maxTokens, nKvHeads·headDim)
  readonly v: GPUBuffer; // (maxTokens, nKvHeads·headDim)
  readonly att: GPUBuffer; // (maxTokens, nHeads·headDim)
  readonly h: GPUBuffer; // (maxTokens, nEmbd) output of Wo or Wdown
  readonly gate: GPUBuffer; // (maxTokens, nFf)
  readonly up: GPUBuffer; // (maxTokens, nFf)
  readonly xo: GPUBuffer; // (logitRows, nEmbd) normed rows that get logits
  readonly logits: GPUBuffer; // (logitRows, vocab)
}

/** Per-step tables, sized for `subSteps` sub-steps. */
interface StepTables {
  readonly subSteps: number;
  readonly tokens: GPUBuffer; // (maxTokens + (subSteps-1)·maxSampleRows) TokenRecords
  readonly rows: GPUBuffer; // (logitRows + (subSteps-1)·maxSampleRows) u32 token indices
  readonly info: GPUBuffer; // subSteps uniform slots of StepInfo
  readonly rowParams: readonly GPUBuffer[]; // per sub-step: maxSampleRows SampleRows
  readonly outIds: GPUBuffer; // (subSteps·maxSampleRows) i32
  readonly readback: GPUBuffer; // MAP_READ copy of outIds
}

/**
 * One kernel step of a layer: an op of the architecture's list, or two adjacent ones fused
 * (a residual add into the norm after it, a per-head Q/K norm into RoPE).
 */
export type GpuLayerStep =
  /** [x += h,] xb = rmsnorm(x) · weight */
  | { readonly kind: "norm"; readonly weight: LayerTensorKey; readonly residual: boolean }
  /** x += rmsnorm(h) · weight (a post-norm: the block's output joins the residual normed) */
  | { readonly kind: "postNorm"; readonly weight: LayerTensorKey }
  /** q, k, v = xb·Wᵀ (+ bias); `fromResidual`: x·Wᵀ (olmo2, no pre-norm) */
  | { readonly kind: "qkv"; readonly bias: boolean; readonly fromResidual?: boolean }
  /** q = rmsnorm(q) · q_norm, k = rmsnorm(k) · k_norm, each over its whole projection, in place (olmo2) */
  | { readonly kind: "qkNormAll" }
  /**
   * q, k = rope([per-head norm of] q, k) and K, V written to the pool; without `rotate`
   * (a layer with no RoPE op, smollm3's) only the norm and the pool write; `slidingFrequencies`:
   * by the sliding-window layers' own frequency table (gemma3's local layers)
   */
  | { readonly kind: "rope"; readonly qkNorm: boolean; readonly rotate: boolean; readonly slidingFrequencies?: boolean }
  /** att = attention over the pool (within `window` positions on a sliding-window layer) */
  | { readonly kind: "attention"; readonly window?: number }
  /** h = att·Woᵀ */
  | { readonly kind: "output" }
  /** h = (act(xb·Wgateᵀ) ⊙ xb·Wupᵀ)·Wdownᵀ, act silu (SwiGLU) or gelu (GeGLU); `fromResidual`: of x */
  | { readonly kind: "gatedFfn"; readonly activation: "silu" | "gelu"; readonly fromResidual?: boolean };

/** The kernel steps of every layer (the last layer's residual add goes into the output norm). */
export interface GpuLayerPlan {
  readonly layers: readonly (readonly GpuLayerStep[])[];
  /** The last layer ends with a plain residual add, which the output norm does (else x is whole). */
  readonly finalResidual: boolean;
}

/**
 * Turns each layer's op list into kernel steps. A residual add waits for the next norm
 * (the fused add-and-norm kernel), across layers and into the output norm; a per-head Q/K
 * norm joins the RoPE after it; the RoPE kernel also writes K and V to the pool, so a layer
 * without RoPE gets a non-rotating one before its attention. An op order these fusions do not cover is refused with
 * ModelConfigError naming the layer and op, rather than run wrongly.
 */
export function gpuLayerSteps(c: ModelConfig): GpuLayerPlan {
  const arch = architecture(c.arch);
  let residualPending = false;
  const refuse = (layer: number, op: LayerOp, why: string): never => {
    throw new ModelConfigError(`${c.arch} layer ${layer} op ${op.op}`, `not supported on the GPU: ${why}`);
  };
  const layers = Array.from({ length: c.nLayers }, (_, layer) => {
    const steps: GpuLayerStep[] = [];
    let qkNormPending = false;
    let kvWritten = false;
    for (const op of arch.layerOps(c, layer)) {
      if (residualPending && op.op !== "norm") refuse(layer, op, "a residual add must be followed by a norm");
      if (qkNormPending && op.op !== "rope" && op.op !== "attention") refuse(layer, op, "a per-head Q/K norm must be followed by RoPE or attention");
      switch (op.op) {
        case "residual":
          residualPending = true;
          break;
        case "norm":
          steps.push({ kind: "norm", weight: op.weight, residual: residualPending });
          residualPending = false;
          break;
        case "postNorm":
          steps.push({ kind: "postNorm", weight: op.weight });
          break;
        case "qkNorm":
          if (op.over === "all") {
            steps.push({ kind: "qkNormAll" });
            break;
          }
          if (!c.qkNorm) refuse(layer, op, "the config has no per-head Q/K norms");
          qkNormPending = true;
          break;
        case "rope":
          if (op.frequencies === "sliding" && c.slidingRopeBase === undefined) refuse(layer, op, "the config has no sliding-window RoPE base");
          steps.push({ kind: "rope", qkNorm: qkNormPending, rotate: true, ...(op.frequencies === "sliding" ? { slidingFrequencies: true } : {}) });
          qkNormPending = false;
          kvWritten = true;
          break;
        case "qkv":
          steps.push({ kind: "qkv", bias: op.bias, ...(op.input === "x" ? { fromResidual: true } : {}) });
          break;
        case "attention":
          if (!kvWritten) steps.push({ kind: "rope", qkNorm: qkNormPending, rotate: false });
          qkNormPending = false;
          steps.push({ kind: "attention", ...(op.window !== undefined ? { window: op.window } : {}) });
          break;
        case "output":
          steps.push({ kind: "output" });
          break;
        case "gatedFfn":
          steps.push({ kind: "gatedFfn", activation: op.activation, ...(op.input === "x" ? { fromResidual: true } : {}) });
          break;
      }
    }
    return steps;
  });
  return { layers, finalResidual: residualPending };
}

/** Bind groups of one layer step (null for steps that are only matrix products). */
type StepGroup =
  | { readonly kind: "norm" | "postNorm" | "rope" | "gatedFfn"; readonly group: GPUBindGroup }
  | { readonly kind: "qkNormAll"; readonly q: GPUBindGroup; readonly k: GPUBindGroup }
  | { readonly kind: "attention"; readonly group: AttentionGroups }
  | null;

/** A layer's bind groups, one per step of its plan. */
type LayerGroups = readonly StepGroup[];

/** Bind groups of one sub-step index. */
interface SubStepGroups {
  readonly embed: readonly GPUBindGroup[];
  readonly history: GPUBindGroup;
  readonly layers: readonly LayerGroups[];
  readonly final: GPUBindGroup;
  /** The final logit soft-cap's (when the model has one). */
  readonly softcap?: GPUBindGroup;
  readonly logitScale?: GPUBindGroup;
}

/** Splits a long recording into several submissions (see {@link GpuForward.record}). */
export class Recorder {
  step: GpuStep;
  #work = 0;
  readonly #next: () => GpuStep;
  readonly #budget: number;

  constructor(next: () => GpuStep, budget: number) {
    this.#next = next;
    this.#budget = budget;
    this.step = next();
  }

  /** Counts `work`; past the budget, submits what was recorded and starts a new step. */
  account(work: number): void {
    this.#work += work;
    if (this.#work < this.#budget) return;
    this.step.submit();
    this.step = this.#next();
    this.#work = 0;
  }
}

/** Usage of every storage buffer here (a function: `GPUBufferUsage` exists only where WebGPU does). */
function storage(): GPUBufferUsageFlags {
  return GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
}

/** Owns everything a model needs on the GPU besides its weights. */
export class GpuForward {
  readonly ctx: GpuContext;
  readonly config: ModelConfig;
  readonly weights: GpuModelWeights;
  /** Each layer's kernel steps, from its architecture's op list. */
  readonly plan: GpuLayerPlan;
  readonly sizes: GpuForwardSizes;
  readonly sampler: DeviceSampler;
  readonly arena: ParamArena;
  /** i32 per slot: the id sampled last (read by the embedding and history kernels). */
  readonly lastSampled: GPUBuffer;
  /** The penalty history ring (kernels/history.ts). */
  readonly history: GPUBuffer;
  readonly act: Activations;
  /**
   * Per layer: the K and V pools, each (pageCount·pageSize, nKvHeads, headDim) spread over
   * `kvLayout.bindings` buffers of whole pages (kernels/kv-pool.ts).
   */
  readonly kPool: readonly (readonly GPUBuffer[])[];
  readonly vPool: readonly (readonly GPUBuffer[])[];
  readonly kvLayout: KvPoolLayout;
  /** Bytes of one page of one layer's K (or V). */
  readonly kvPageBytes: number;
  /** Page tables: `maxPages` u32 per slot. */
  readonly pageTable: GPUBuffer;
  /** Page-table entries per slot: ceil(contextLength / pageSize). */
  readonly maxPages: number;
  /** Bytes of the KV pool. */
  readonly kvBytes: number;
  readonly #freqs: GPUBuffer;
  /** The sliding-window layers' own RoPE frequencies (gemma3), or null. */
  readonly #slidingFreqs: GPUBuffer | null;
  /** One page of one layer's K (or V): page copies within one buffer go through it. */
  readonly #copyStaging: GPUBuffer;
  /** Partial results of split attention (decode steps of up to `attention.splitTokens` tokens). */
  readonly #attentionScratch: GPUBuffer | null;
  readonly #uniformAlign: number;
  #tables: StepTables;
  #groups = new Map<number, SubStepGroups>();
  /** Multiply-adds per token and weight bytes of one layer (see `#layerWork`). */
  readonly #layerMacs: number;
  readonly #layerBytes: number;

  readonly matrix: MatrixKernels;
  readonly embed: EmbeddingKernel;
  readonly historyKernel: HistoryKernel;
  readonly norm: RmsNormKernel;
  readonly addNorm: RmsNormKernel;
  /** x += rmsnorm(h) · weight, when a layer has a post-norm. */
  readonly postNorm: RmsNormKernel | null;
  /** In-place norms of the whole Q and of the whole K projection (olmo2), or null. */
  readonly qkNormAll: { readonly q: RmsNormKernel; readonly k: RmsNormKernel } | null;
  readonly finalNorm: RmsNormKernel;
  readonly rope: RopeKernel;
  /** The RoPE kernel with nothing rotated (K/V append only), when a layer has no RoPE op. */
  readonly kvAppend: RopeKernel | null;
  /** Attention over every position before a token (the model's scale and soft-cap). */
  readonly attention: AttentionKernel;
  /** Attention of the sliding-window layers, by window (gemma). */
  readonly windowedAttention: ReadonlyMap<number, AttentionKernel>;
  /** The gated feed-forward's gate: SwiGLU, or GeGLU (gemma). */
  readonly swiglu: ElementwiseKernel;
  readonly geglu: ElementwiseKernel | null;
  /** cap·tanh(logit/cap) over the rows that get logits (gemma2), or null. */
  readonly finalSoftcap: ElementwiseKernel | null;
  /** granite: the logits divided by `logit_scale`. */
  readonly logitScale: ElementwiseKernel | null;

  private constructor(
    ctx: GpuContext,
    config: ModelConfig,
    weights: GpuModelWeights,
    sizes: GpuForwardSizes,
    sampler: DeviceSampler,
    matrix: MatrixKernelsOptions,
  ) {
    this.ctx = ctx;
    this.config = config;
    this.weights = weights;
    this.sizes = sizes;
    this.sampler = sampler;
    this.#uniformAlign = Math.max(ctx.limits.minUniformBufferOffsetAlignment, STEP_INFO_BYTES);
    this.arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
    const c = config;
    const a = ctx.allocator;
    const f32 = (label: string, rows: number, width: number) => {
      checkBinding(ctx, label, rows * width * 4);
      return a.createBuffer({ label, size: rows * width * 4, usage: storage() });
    };
    const T = sizes.maxTokens;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKvHeads * c.headDim;
    this.act = {
      x: f32("x", T, c.nEmbd),
      xb: f32("xb", T, c.nEmbd),
      q: f32("q", T, qDim),
      k: f32("k", T, kvDim),
      v: f32("v", T, kvDim),
      att: f32("att", T, qDim),
      h: f32("h", T, c.nEmbd),
      gate: f32("gate", T, c.nFf),
      up: f32("up", T, c.nFf),
      xo: f32("xo", sizes.logitRows, c.nEmbd),
      logits: f32("logits", sizes.logitRows, c.vocabSize),
    };
    this.kvPageBytes = kvPageBytes(c, sizes.pageSize, sizes.kvCacheType);
    this.kvLayout = planKvLayout(ctx, c, sizes.pageSize, sizes.pageCount, sizes.kvCacheType);
    const poolBuffers = (what: "K" | "V", l: number) =>
      Array.from({ length: this.kvLayout.bindings }, (_, b) => {
        const pages = Math.min(sizes.pageCount - b * this.pagesPerBinding, this.pagesPerBinding);
        return a.createBuffer({ label: `blk.${l} ${what} pool ${b}`, size: pages * this.kvPageBytes, usage: storage() });
      });
    this.kPool = Array.from({ length: c.nLayers }, (_, l) => poolBuffers("K", l));
    this.vPool = Array.from({ length: c.nLayers }, (_, l) => poolBuffers("V", l));
    this.kvBytes = 2 * c.nLayers * sizes.pageCount * this.kvPageBytes;
    this.maxPages = Math.ceil(sizes.contextLength / sizes.pageSize);
    this.pageTable = a.createBuffer({ label: "page tables", size: sizes.maxSlots * this.maxPages * 4, usage: storage() });
    this.#copyStaging = a.createBuffer({ label: "page copy staging", size: this.kvPageBytes, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    this.lastSampled = a.createBuffer({ label: "last sampled", size: sizes.maxSlots * 4, usage: storage() });
    a.writeBuffer(this.lastSampled, 0, new Int32Array(sizes.maxSlots).fill(-1));
    this.history = createHistoryBuffer(ctx, sizes.maxSlots);
    // LongRoPE (phi3) picks its long or short divisors by the context a sequence may hold.
    const divisors = { freqs: weights.ropeFreqDivisors, ...(weights.longRope ? { longRope: weights.longRope } : {}) };
    const freqTable = ropeFreqTable(ropeFrequencies(c.rope, sequenceRopeDivisors(c.longRope, divisors, sizes.contextLength)));
    const upload = (label: string, table: Float32Array) => {
      const buffer = a.createBuffer({ label, size: table.byteLength, usage: storage() });
      a.writeBuffer(buffer, 0, table);
      return buffer;
    };
    this.#freqs = upload("rope freqs", freqTable);
    const slidingFreqs = slidingRopeFrequencies(c);
    this.#slidingFreqs = slidingFreqs === null ? null : upload("sliding rope freqs", ropeFreqTable(slidingFreqs));
    this.#tables = this.#createTables(sizes.subSteps);

    this.plan = gpuLayerSteps(c);
    const matrices = Object.values(weights.layers[0]!.matrices);
    this.#layerMacs = matrices.reduce((s, w) => s + w.rows * w.cols, 0);
    this.#layerBytes = matrices.reduce((s, w) => s + w.byteLength, 0);

    const kvF16 = sizes.kvCacheType === "f16";
    this.matrix = new MatrixKernels(ctx, matrix);
    this.embed = new EmbeddingKernel(ctx, weights.tokenEmbd, c.embeddingScale);
    this.historyKernel = new HistoryKernel(ctx);
    this.norm = new RmsNormKernel(ctx, { width: c.nEmbd, eps: c.normEps, residual: false, gather: false });
    // granite scales each block's output as it joins the residual stream: in the fused add.
    const residualScale = c.residualScale !== undefined ? { residualScale: c.residualScale } : {};
    this.addNorm = new RmsNormKernel(ctx, { width: c.nEmbd, eps: c.normEps, residual: true, gather: false, ...residualScale });
    this.finalNorm = new RmsNormKernel(ctx, { width: c.nEmbd, eps: c.normEps, residual: this.plan.finalResidual, gather: true, ...residualScale });
    const anyPostNorm = this.plan.layers.some((steps) => steps.some((s) => s.kind === "postNorm"));
    this.postNorm = anyPostNorm ? new RmsNormKernel(ctx, { width: c.nEmbd, eps: c.normEps, residual: false, gather: false, post: true }) : null;
    const anyQkNormAll = this.plan.layers.some((steps) => steps.some((s) => s.kind === "qkNormAll"));
    const inPlaceNorm = (width: number) => new RmsNormKernel(ctx, { width, eps: c.normEps, residual: false, gather: false, inPlace: true });
    this.qkNormAll = anyQkNormAll ? { q: inPlaceNorm(c.nHeads * c.headDim), k: inPlaceNorm(c.nKvHeads * c.headDim) } : null;
    const ropeKey = {
      headDim: c.headDim,
      nHeads: c.nHeads,
      nKvHeads: c.nKvHeads,
      ropeDims: c.rope.dims,
      neox: c.rope.layout === "neox",
      pool: this.kvLayout,
      kvF16,
      qkNormEps: c.qkNorm ? c.normEps : null,
      ...(c.rope.attnFactor !== undefined ? { attnFactor: c.rope.attnFactor } : {}),
    };
    this.rope = new RopeKernel(ctx, ropeKey);
    const anyUnrotated = this.plan.layers.some((steps) => steps.some((s) => s.kind === "rope" && !s.rotate));
    // No rotated dims: the kernel's pair loop runs zero times, leaving the head as it is.
    this.kvAppend = anyUnrotated ? new RopeKernel(ctx, { ...ropeKey, ropeDims: 0 }) : null;
    const attentionKey = {
      headDim: c.headDim, nHeads: c.nHeads, nKvHeads: c.nKvHeads, maxPages: this.maxPages, pool: this.kvLayout, kvF16,
      ...(c.attentionScale !== undefined ? { scale: c.attentionScale } : {}),
      ...(c.attentionSoftcap !== undefined ? { softcap: c.attentionSoftcap } : {}),
    };
    // Decode steps hold one token per sequence: split those (a step of more tokens has
    // work-groups enough), for at most 16 tokens to keep the scratch small. Not on
    // lavapipe: its two or so threads are busy with a few work-groups already, and the
    // split decode step's attention took twice the time there.
    const split = { splitTokens: isLavapipe(ctx) ? 0 : Math.min(16, sizes.maxSlots) };
    this.attention = new AttentionKernel(ctx, attentionKey, split);
    const windows = new Set(this.plan.layers.flatMap((steps) => steps.flatMap((s) => (s.kind === "attention" && s.window !== undefined ? [s.window] : []))));
    this.windowedAttention = new Map([...windows].map((window) => [window, new AttentionKernel(ctx, { ...attentionKey, window }, split)]));
    // Every attention variant splits alike, so one scratch serves them all.
    const scratch = this.attention.scratchBytes;
    this.#attentionScratch = scratch > 0 ? a.createBuffer({ label: "attention partials", size: scratch, usage: storage() }) : null;
    this.swiglu = new ElementwiseKernel(ctx, { op: "swiglu", width: c.nFf });
    const anyGelu = this.plan.layers.some((steps) => steps.some((s) => s.kind === "gatedFfn" && s.activation === "gelu"));
    this.geglu = anyGelu ? new ElementwiseKernel(ctx, { op: "geglu", width: c.nFf }) : null;
    this.finalSoftcap = c.finalLogitSoftcap !== undefined ? new ElementwiseKernel(ctx, { op: "softcap", width: c.vocabSize, cap: c.finalLogitSoftcap }) : null;
    // granite: logits · f32(1 / logit_scale), as llama.cpp's ggml_scale.
    this.logitScale = c.logitScale !== undefined ? new ElementwiseKernel(ctx, { op: "scale", width: c.vocabSize, factor: Math.fround(1 / c.logitScale) }) : null;
  }

  /** Allocates everything and compiles every pipeline the recording will use. */
  static async create(
    ctx: GpuContext,
    config: ModelConfig,
    weights: GpuModelWeights,
    sizes: GpuForwardSizes,
    sampler: DeviceSampler,
    matrix: MatrixKernelsOptions = {},
  ): Promise<GpuForward> {
    // Creation is synchronous; failed allocations (the KV cache is the big one) surface in
    // these scopes, turned into a typed error here instead of an uncaptured one later.
    ctx.device.pushErrorScope("out-of-memory");
    ctx.device.pushErrorScope("validation");
    let f: GpuForward | undefined;
    let thrown: unknown = undefined;
    try {
      f = new GpuForward(ctx, config, weights, sizes, sampler, matrix);
    } catch (error) {
      thrown = error;
    }
    const validation = await ctx.device.popErrorScope();
    const oom = await ctx.device.popErrorScope();
    if (thrown !== undefined) throw thrown;
    if (oom || validation || !f) {
      const kind = oom ? "OUT_OF_MEMORY" : "GPU_VALIDATION";
      throw new GpuError(kind, `allocating the KV cache and activations failed: ${(oom ?? validation)?.message ?? "unknown"}`, {
        label: "forward buffers",
      });
    }
    const layers = weights.layers;
    const isQkv = (key: string) => key === "q" || key === "k" || key === "v";
    const qkv = layers.flatMap((l) => Object.entries(l.matrices).filter(([key]) => isQkv(key)).map(([, w]) => w));
    const rest = [...layers.flatMap((l) => Object.entries(l.matrices).filter(([key]) => !isQkv(key)).map(([, w]) => w)), weights.output];
    await Promise.all([
      f.matrix.prepare(qkv, { bias: config.qkvBias }),
      f.matrix.prepare(rest),
      ...[f.embed, f.historyKernel, f.norm, f.addNorm, f.finalNorm, f.rope, f.attention, f.swiglu].map((k) => k.prepare()),
      ...(f.kvAppend ? [f.kvAppend.prepare()] : []),
      ...(f.postNorm ? [f.postNorm.prepare()] : []),
      ...(f.qkNormAll ? [f.qkNormAll.q.prepare(), f.qkNormAll.k.prepare()] : []),
      ...[...f.windowedAttention.values(), f.geglu, f.finalSoftcap, f.logitScale].flatMap((k) => (k ? [k.prepare()] : [])),
      sampler.prepare(),
    ]);
    ctx.check();
    return f;
  }

  /** Pages each pool buffer holds (the last may hold fewer). */
  get pagesPerBinding(): number {
    return this.kvLayout.rowsPerBinding / this.kvLayout.pageSize;
  }

  /**
   * Records whole-page copies (K and V of every layer) into `encoder`: the copy-on-write of
   * a page that two sequences share.
   */
  recordPageCopies(encoder: GPUCommandEncoder, copies: readonly { readonly from: number; readonly to: number }[]): void {
    const per = this.pagesPerBinding;
    const bytes = this.kvPageBytes;
    for (const { from, to } of copies) {
      if (from === to) continue;
      for (const pool of [this.kPool, this.vPool]) {
        for (const buffers of pool) {
          const src = buffers[Math.floor(from / per)]!;
          const dst = buffers[Math.floor(to / per)]!;
          if (src !== dst) {
            encoder.copyBufferToBuffer(src, (from % per) * bytes, dst, (to % per) * bytes, bytes);
            continue;
          }
          // WebGPU refuses a copy within one buffer: through the staging page (commands of
          // one encoder run in order, so one staging page serves every copy).
          encoder.copyBufferToBuffer(src, (from % per) * bytes, this.#copyStaging, 0, bytes);
          encoder.copyBufferToBuffer(this.#copyStaging, 0, dst, (to % per) * bytes, bytes);
        }
      }
    }
  }

  /** The current tables (grown by {@link ensureSubSteps}). */
  get tables(): StepTables {
    return this.#tables;
  }

  /** Byte offset of sub-step `k`'s StepInfo in `tables.info`. */
  infoOffset(k: number): number {
    return k * this.#uniformAlign;
  }

  /** First row-table index of sub-step k. */
  rowBase(k: number): number {
    return k === 0 ? 0 : this.sizes.logitRows + (k - 1) * this.sizes.maxSampleRows;
  }

  /** First token-table index of sub-step k. */
  tokenBase(k: number): number {
    return k === 0 ? 0 : this.sizes.maxTokens + (k - 1) * this.sizes.maxSampleRows;
  }

  /** Makes the tables hold at least `subSteps` sub-steps (rebuilding them and their bind groups). */
  ensureSubSteps(subSteps: number): void {
    if (subSteps <= this.#tables.subSteps) return;
    this.#destroyTables(this.#tables);
    this.#tables = this.#createTables(Math.max(subSteps, 2 * this.#tables.subSteps));
    this.#groups.clear();
  }

  /**
   * Records sub-step `k` over `nTokens` tokens (their records at `tokenBase(k)`), then, when
   * `nRows` > 0, the logits of those rows and (with `sample`) the sampler into
   * `tables.rowParams[k]`. `attentionMacs` is one layer's attention work (Σ over tokens of
   * (pos + 1)·qDim·2), counted with the layers' work against the recorder's budget;
   * `maxKeys` is the most positions a token attends over (its pos + 1), which decides how
   * attention splits its work. With `head` "hidden" the rows stop after the output norm,
   * in `act.xo` (what an embedding pools): no logits, no sampling.
   */
  record(
    rec: Recorder,
    k: number,
    nTokens: number,
    nRows: number,
    sample: boolean,
    attentionMacs: number,
    maxKeys: number,
    head: "logits" | "hidden" = "logits",
  ): void {
    const g = this.#groupsFor(k);
    const a = this.act;
    const m = this.matrix;
    const layerWork = this.#layerWork(nTokens) + attentionMacs;
    this.embed.record(rec.step, g.embed, nTokens);
    this.historyKernel.record(rec.step, g.history);
    this.weights.layers.forEach((w, l) => {
      const groups = g.layers[l]!;
      this.plan.layers[l]!.forEach((s, i) => this.#recordStep(rec.step, s, groups[i] ?? null, w, l, nTokens, maxKeys));
      rec.account(layerWork);
    });
    if (nRows === 0) return;
    this.finalNorm.record(rec.step, g.final, nRows);
    if (head === "hidden") return;
    m.matmul(rec.step, this.weights.output, a.xo, a.logits, nRows);
    if (this.finalSoftcap) this.finalSoftcap.record(rec.step, g.softcap!, nRows);
    if (this.logitScale) this.logitScale.record(rec.step, g.logitScale!, nRows);
    if (sample) {
      const t = this.#tables;
      this.sampler.record(rec.step.computePass(), {
        logits: a.logits,
        rows: nRows,
        rowParams: t.rowParams[k]!,
        history: this.history,
        lastSampled: this.lastSampled,
        outIds: t.outIds,
      });
    }
    const out = this.weights.output;
    rec.account(nRows * out.rows * out.cols + out.byteLength * 16);
  }

  /** Records one kernel step of layer `l` (see {@link gpuLayerSteps}). */
  #recordStep(step: GpuStep, s: GpuLayerStep, group: StepGroup, w: GpuLayerWeights, l: number, nTokens: number, maxKeys: number): void {
    const a = this.act;
    const m = this.matrix;
    const bindGroup = (): GPUBindGroup => {
      if (group?.kind !== s.kind || group.kind === "attention" || group.kind === "qkNormAll") throw new GpuError("GPU_VALIDATION", `no bind group for blk.${l} ${s.kind}`, { label: s.kind });
      return group.group;
    };
    switch (s.kind) {
      case "norm":
        return (s.residual ? this.addNorm : this.norm).record(step, bindGroup(), nTokens);
      case "postNorm":
        return this.#postNormKernel().record(step, bindGroup(), nTokens);
      case "qkv": {
        const bias = (key: LayerTensorKey) => (s.bias ? { bias: layerVector(w, key, l) } : {});
        const input = s.fromResidual ? a.x : a.xb;
        m.matmul(step, layerMatrix(w, "q", l), input, a.q, nTokens, bias("qBias"));
        m.matmul(step, layerMatrix(w, "k", l), input, a.k, nTokens, bias("kBias"));
        m.matmul(step, layerMatrix(w, "v", l), input, a.v, nTokens, bias("vBias"));
        return;
      }
      case "qkNormAll": {
        const kernels = this.#qkNormAllKernels();
        if (group?.kind !== "qkNormAll") throw new GpuError("GPU_VALIDATION", `no bind group for blk.${l} qkNormAll`, { label: s.kind });
        kernels.q.record(step, group.q, nTokens);
        kernels.k.record(step, group.k, nTokens);
        return;
      }
      case "rope":
        return this.#ropeKernel(s).record(step, bindGroup(), nTokens);
      case "attention":
        if (group?.kind !== "attention") throw new GpuError("GPU_VALIDATION", `no bind group for blk.${l} attention`, { label: "attention" });
        return this.#attentionKernel(s).record(step, group.group, nTokens, maxKeys);
      case "output":
        return m.matmul(step, layerMatrix(w, "o", l), a.att, a.h, nTokens);
      case "gatedFfn": {
        const input = s.fromResidual ? a.x : a.xb;
        m.matmul(step, layerMatrix(w, "gate", l), input, a.gate, nTokens);
        m.matmul(step, layerMatrix(w, "up", l), input, a.up, nTokens);
        this.#gateKernel(s).record(step, bindGroup(), nTokens);
        m.matmul(step, layerMatrix(w, "down", l), a.gate, a.h, nTokens);
        return;
      }
    }
  }

  /** The attention kernel of a step: the window's, or the one over all positions. */
  #attentionKernel(s: GpuLayerStep & { kind: "attention" }): AttentionKernel {
    if (s.window === undefined) return this.attention;
    const kernel = this.windowedAttention.get(s.window);
    if (!kernel) throw new GpuError("GPU_VALIDATION", `no attention kernel for a window of ${s.window}`, { label: "attention" });
    return kernel;
  }

  /** The gate kernel of a feed-forward step. */
  #gateKernel(s: GpuLayerStep & { kind: "gatedFfn" }): ElementwiseKernel {
    if (s.activation === "silu") return this.swiglu;
    if (!this.geglu) throw new GpuError("GPU_VALIDATION", "no GeGLU kernel for a gelu feed-forward", { label: "geglu" });
    return this.geglu;
  }

  /** The in-place Q and K norms (made when the plan has a qkNormAll step). */
  #qkNormAllKernels(): { readonly q: RmsNormKernel; readonly k: RmsNormKernel } {
    if (!this.qkNormAll) throw new GpuError("GPU_VALIDATION", "no in-place Q/K norm kernels for a qkNormAll step", { label: "qkNormAll" });
    return this.qkNormAll;
  }

  /** The post-norm kernel (made when the plan has a post-norm step). */
  #postNormKernel(): RmsNormKernel {
    if (!this.postNorm) throw new GpuError("GPU_VALIDATION", "no post-norm kernel for a post-norm step", { label: "postNorm" });
    return this.postNorm;
  }

  /** The RoPE kernel of a step: the model's, or the one that only writes K and V. */
  #ropeKernel(s: GpuLayerStep & { kind: "rope" }): RopeKernel {
    if (s.rotate) return this.rope;
    if (!this.kvAppend) throw new GpuError("GPU_VALIDATION", "no K/V append kernel for a layer without RoPE", { label: "rope" });
    return this.kvAppend;
  }

  /** Bind groups of layer `l`'s steps for one sub-step. */
  #layerGroups(l: number, lw: GpuLayerWeights, step: GPUBufferBinding, tokens: GPUBuffer, label: (what: string) => string): LayerGroups {
    const a = this.act;
    return this.plan.layers[l]!.map((s): StepGroup => {
      switch (s.kind) {
        case "norm": {
          const weight = layerVector(lw, s.weight, l);
          const name = label(`blk.${l} ${s.weight} norm`);
          const group = s.residual
            ? this.addNorm.bind({ x: a.x, h: a.h, weight, y: a.xb, step }, name)
            : this.norm.bind({ x: a.x, weight, y: a.xb, step }, name);
          return { kind: "norm", group };
        }
        case "qkNormAll": {
          const kernels = this.#qkNormAllKernels();
          const q = kernels.q.bind({ x: a.q, weight: layerVector(lw, "qNorm", l), step }, label(`blk.${l} q norm`));
          const k = kernels.k.bind({ x: a.k, weight: layerVector(lw, "kNorm", l), step }, label(`blk.${l} k norm`));
          return { kind: "qkNormAll", q, k };
        }
        case "postNorm": {
          const weight = layerVector(lw, s.weight, l);
          return { kind: "postNorm", group: this.#postNormKernel().bind({ x: a.x, h: a.h, weight, step }, label(`blk.${l} ${s.weight}`)) };
        }
        case "rope": {
          const freqs = s.slidingFrequencies ? this.#slidingFreqs : this.#freqs;
          if (freqs === null) throw new GpuError("GPU_VALIDATION", "no sliding-window RoPE frequencies for a sliding layer", { label: `blk.${l} rope` });
          const resources = { q: a.q, k: a.k, v: a.v, kPool: this.kPool[l]!, vPool: this.vPool[l]!, freqs, tokens, step };
          const norms = s.qkNorm ? (lw.qkNorm ?? undefined) : undefined;
          return { kind: "rope", group: this.#ropeKernel(s).bind({ ...resources, norms }, label(`blk.${l} rope`)) };
        }
        case "attention": {
          const resources = { q: a.q, kPool: this.kPool[l]!, vPool: this.vPool[l]!, pageTable: this.pageTable, out: a.att, tokens, step };
          const scratch = this.#attentionScratch ?? undefined;
          return { kind: "attention", group: this.#attentionKernel(s).bind({ ...resources, scratch }, label(`blk.${l} attention`)) };
        }
        case "gatedFfn":
          return { kind: "gatedFfn", group: this.#gateKernel(s).bind({ a: a.gate, b: a.up, step }, label(`blk.${l} ${s.activation} gate`)) };
        case "qkv":
        case "output":
          return null;
      }
    });
  }

  /** Destroys the per-kernel uniforms and the arena (the context's destroy frees the rest). */
  destroy(): void {
    this.embed.destroy();
    this.matrix.destroy();
    this.arena.destroy();
  }

  /**
   * Work of one layer over n tokens, in multiply-adds, plus its weight bytes weighted by 16
   * per 64-token tile: a decode step is bound by reading the weights, a prefill by math.
   */
  #layerWork(nTokens: number): number {
    return nTokens * this.#layerMacs + Math.ceil(nTokens / 64) * this.#layerBytes * 16;
  }

  #createTables(subSteps: number): StepTables {
    const a = this.ctx.allocator;
    const s = this.sizes;
    const extra = (subSteps - 1) * s.maxSampleRows;
    const outBytes = Math.max(4, subSteps * s.maxSampleRows * 4);
    return {
      subSteps,
      tokens: a.createBuffer({ label: "token table", size: (s.maxTokens + extra) * TOKEN_RECORD_BYTES, usage: storage() }),
      rows: a.createBuffer({ label: "row table", size: (s.logitRows + extra) * 4, usage: storage() }),
      info: a.createBuffer({
        label: "step infos",
        size: subSteps * this.#uniformAlign,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      }),
      rowParams: Array.from({ length: subSteps }, (_, k) =>
        a.createBuffer({ label: `sample rows ${k}`, size: s.maxSampleRows * SAMPLE_ROW_BYTES, usage: storage() }),
      ),
      outIds: a.createBuffer({ label: "sampled ids", size: outBytes, usage: storage() }),
      readback: a.createBuffer({ label: "sampled ids readback", size: outBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
    };
  }

  #destroyTables(t: StepTables): void {
    const a = this.ctx.allocator;
    for (const b of [t.tokens, t.rows, t.info, ...t.rowParams, t.outIds, t.readback]) a.destroy(b);
  }

  #groupsFor(k: number): SubStepGroups {
    const cached = this.#groups.get(k);
    if (cached) return cached;
    const t = this.#tables;
    const a = this.act;
    const w = this.weights;
    const step = stepInfoBinding(t.info, k, this.#uniformAlign);
    const label = (what: string) => `${what} (sub-step ${k})`;
    const groups: SubStepGroups = {
      embed: this.embed.bind({ tokens: t.tokens, lastSampled: this.lastSampled, x: a.x, step }, label("embed")),
      history: this.historyKernel.bind({ tokens: t.tokens, lastSampled: this.lastSampled, history: this.history, step }, label("history")),
      layers: w.layers.map((lw, l) => this.#layerGroups(l, lw, step, t.tokens, label)),
      final: this.finalNorm.bind({ x: a.x, h: a.h, weight: w.outputNorm, y: a.xo, step, rows: t.rows }, label("output norm")),
      ...(this.finalSoftcap ? { softcap: this.finalSoftcap.bind({ a: a.logits, step }, label("logit soft-cap")) } : {}),
      ...(this.logitScale ? { logitScale: this.logitScale.bind({ a: a.logits, step }, label("logit scale")) } : {}),
    };
    this.#groups.set(k, groups);
    return groups;
  }
}

/** Bytes of one page of one layer's K (or V). */
export function kvPageBytes(c: ModelConfig, pageSize: number, type: KvCacheType): number {
  return pageSize * c.nKvHeads * c.headDim * (type === "f16" ? 2 : 4);
}

/**
 * Storage buffers a shader stage binds besides the pool's: the rope kernel's Q, K, V,
 * rope frequencies, token table and (qwen3) Q/K norms; attention binds fewer (Q, output,
 * token table, page tables).
 */
function fixedStorageBindings(c: ModelConfig): number {
  return 5 + (c.qkNorm ? 1 : 0);
}

/** Most buffers one layer's K (or V) pool may span on this device (0: not even one). */
export function maxKvBindings(ctx: GpuContext, c: ModelConfig): number {
  return Math.min(MAX_KV_BINDINGS, Math.floor((ctx.limits.maxStorageBuffersPerShaderStage - fixedStorageBindings(c)) / 2));
}

/** Pages one pool buffer may hold on this device. */
export function kvPagesPerBinding(ctx: GpuContext, c: ModelConfig, pageSize: number, type: KvCacheType): number {
  const limit = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  return Math.floor(limit / kvPageBytes(c, pageSize, type));
}

/**
 * How `pageCount` pages of one layer spread over storage bindings: as few buffers as the
 * binding size allows. LIMIT_TOO_LOW (naming kvCacheBytes / --kv-budget) when the pool
 * needs more buffers than the shaders may bind.
 */
export function planKvLayout(ctx: GpuContext, c: ModelConfig, pageSize: number, pageCount: number, type: KvCacheType): KvPoolLayout {
  const perBinding = kvPagesPerBinding(ctx, c, pageSize, type);
  const most = maxKvBindings(ctx, c);
  const bindings = perBinding > 0 ? Math.ceil(pageCount / perBinding) : Infinity;
  if (bindings > most) {
    const fits = Math.max(0, perBinding * most);
    throw new GpuError(
      "LIMIT_TOO_LOW",
      `a KV pool of ${pageCount} pages needs ${bindings} storage bindings per layer, this device allows ${most} (${fits} pages); lower kvCacheBytes (--kv-budget) or contextLength (--context)`,
      { label: "KV pool", limit: "maxStorageBufferBindingSize", needed: pageCount * kvPageBytes(c, pageSize, type), available: fits * kvPageBytes(c, pageSize, type) },
    );
  }
  return { pageSize, rowsPerBinding: Math.min(perBinding, pageCount) * pageSize, bindings };
}

/** Throws LIMIT_TOO_LOW when a buffer that is bound whole exceeds one storage binding. */
function checkBinding(ctx: GpuContext, what: string, bytes: number): void {
  const limit = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  if (bytes <= limit) return;
  throw new GpuError("LIMIT_TOO_LOW", `${what} needs ${bytes} bytes, more than one storage binding holds (${limit}); lower maxBatchTokens, maxSlots or contextLength`, {
    label: what,
    limit: "maxStorageBufferBindingSize",
    needed: bytes,
    available: limit,
  });
}
