/**
 * Causal grouped-query attention over the paged KV pool (shaders/attention.wgsl), each
 * token reading its sequence's keys through its slot's page table,
 * with online softmax over tiles of positions: any context length runs in the same few
 * KiB of work-group memory. Steps of few tokens (decoding) split each token's positions
 * over several work-groups and merge their partial results ("flash decoding").
 *
 * ```ts
 * const attn = new AttentionKernel(ctx, { headDim: 64, nHeads: 32, nKvHeads: 8, maxPages: 128,
 *   pool: { pageSize: 32, rowsPerBinding: 65536, bindings: 1 }, kvF16: true }, { splitTokens: 8 });
 * const scratch = device.createBuffer({ size: attn.scratchBytes, usage: GPUBufferUsage.STORAGE });
 * const groups = attn.bind({ q, kPool: [k0], vPool: [v0], pageTable, out, tokens, step: info, scratch });
 * attn.record(step, groups, nTokens, maxKeys);   // maxKeys: most positions a token attends over
 * ```
 *
 * Families vary the scores through the key: `scale` (gemma: 1/√query_pre_attn_scalar
 * instead of 1/√headDim), `softcap` (gemma2: cap·tanh(score/cap) before the softmax) and
 * `window` (sliding-window layers: a token at pos reads only positions pos − window + 1 … pos,
 * so the pages holding only older positions are never read).
 */
import { InvalidArgumentError } from "../../errors.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { GpuStep } from "../step.ts";
import { type BindingInput, ModelKernel } from "./kernel.ts";
import { type KvPoolLayout, kvPoolBindings, kvPoolDefines, kvPoolName } from "./kv-pool.ts";
import { wgslFloat } from "./tokens.ts";

/** Typed key of an attention variant. */
export interface AttentionKey {
  readonly headDim: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  /** Page-table entries per slot (u32 each): ceil(contextLength / pageSize). */
  readonly maxPages: number;
  /** How the pool's rows are spread over bindings. */
  readonly pool: KvPoolLayout;
  readonly kvF16: boolean;
  /** Multiplies q·k; default 1/√headDim. */
  readonly scale?: number;
  /** Soft-caps each scaled score to cap·tanh(score/cap) (gemma2); absent = no cap. */
  readonly softcap?: number;
  /** Sliding window: positions a token sees, itself included; absent = all before it. */
  readonly window?: number;
}

/** Threads per work-group = positions per tile. */
const WG = 64;
/** Most query heads one work-group serves (registers: GB × headDim / WG accumulators). */
const MAX_HEADS_PER_GROUP = 8;

/** Query heads per work-group: the largest divisor of the GQA group size up to 8. */
export function headsPerWorkgroup(key: AttentionKey): number {
  const group = key.nHeads / key.nKvHeads;
  for (let gb = Math.min(group, MAX_HEADS_PER_GROUP); gb > 1; gb--) if (group % gb === 0) return gb;
  return 1;
}

/** Checks the optional score parameters of a key (each a finite number in its range). */
function checkScoreOptions(key: AttentionKey): void {
  const positive = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new InvalidArgumentError(name, `attention ${name} must be a finite number > 0, got ${v}`);
  };
  positive("scale", key.scale);
  positive("softcap", key.softcap);
  if (key.window !== undefined && !(Number.isInteger(key.window) && key.window >= 1)) {
    throw new InvalidArgumentError("window", `attention window must be a whole number ≥ 1, got ${key.window}`);
  }
}

/** The part of a variant name (and the defines) for the optional score parameters. */
function scoreOptions(key: AttentionKey): { name: string; defines: Record<string, string | number | boolean> } {
  checkScoreOptions(key);
  const scale = key.scale === undefined ? "" : wgslFloat(key.scale);
  const cap = key.softcap === undefined ? "" : wgslFloat(key.softcap);
  return {
    name: `${scale ? `_scale${scale}` : ""}${cap ? `_cap${cap}` : ""}${key.window ? `_swa${key.window}` : ""}`,
    defines: { SCALE: scale, SOFTCAP: cap !== "", ...(cap ? { CAP: cap } : {}), WINDOW: key.window ?? 0 },
  };
}

/** The variant of a key. */
export function attentionVariant(key: AttentionKey): KernelVariant {
  const gb = headsPerWorkgroup(key);
  const score = scoreOptions(key);
  return {
    name: `attention_hd${key.headDim}_h${key.nHeads}_kv${key.nKvHeads}_pages${key.maxPages}_${kvPoolName(key.pool)}_gb${gb}${key.kvF16 ? "_f16" : "_f32"}${score.name}`,
    file: "attention.wgsl",
    defines: {
      HEAD_DIM: key.headDim,
      N_HEADS: key.nHeads,
      N_KV_HEADS: key.nKvHeads,
      MAX_PAGES: key.maxPages,
      GB: gb,
      WG,
      ...kvPoolDefines(key.pool, key.kvF16, "read"),
      ...score.defines,
    },
  };
}

/** How an {@link AttentionKernel} splits the positions of small steps. */
export interface AttentionSplitOptions {
  /** Most tokens a split step holds (the scratch is sized for them); 0 turns splitting off. Default 0. */
  readonly splitTokens?: number;
  /** Most work-groups one token's positions are split over; default 32. */
  readonly maxSplits?: number;
  /** Fewest positions per split; default 64 (one tile). */
  readonly minSpan?: number;
}

const DEFAULT_MAX_SPLITS = 32;
const DEFAULT_MIN_SPAN = 64;

/** The split variant's defines on top of a key's (the partial pass, or its `combine` entry point). */
function splitVariant(key: AttentionKey, splitTokens: number, maxSplits: number, entryPoint: "main" | "combine"): KernelVariant {
  const base = attentionVariant(key);
  return {
    name: `${base.name}_split${maxSplits}x${splitTokens}${entryPoint === "combine" ? "_combine" : ""}`,
    file: base.file,
    defines: { ...base.defines, SPLIT: true, MAX_SPLITS: maxSplits, SPLIT_TOKENS: splitTokens },
    entryPoint,
  };
}

/** Bind groups of one layer's attention: direct, and (with a scratch buffer) split and combine. */
export interface AttentionGroups {
  readonly direct: GPUBindGroup;
  readonly split?: GPUBindGroup;
  readonly combine?: GPUBindGroup;
}

/** Buffers of one attention dispatch. */
export interface AttentionBindings {
  /** Rotated Q rows (nHeads·headDim per token). */
  readonly q: GPUBuffer;
  /** This layer's pool: K and V, one buffer per binding (shaders/kv-pool.wgsl). */
  readonly kPool: readonly GPUBuffer[];
  readonly vPool: readonly GPUBuffer[];
  /** Page tables: `maxPages` u32 per slot. */
  readonly pageTable: GPUBuffer;
  /** Output rows, shaped like Q. */
  readonly out: GPUBuffer;
  /** Token table. */
  readonly tokens: GPUBuffer;
  readonly step: GPUBufferBinding;
  /** Partial results of split steps, `scratchBytes` long (absent: never split). */
  readonly scratch?: GPUBuffer;
}

/** One attention variant, with its split form when `splitTokens` > 0. */
export class AttentionKernel extends ModelKernel {
  readonly key: AttentionKey;
  readonly headsPerWorkgroup: number;
  readonly splitTokens: number;
  readonly maxSplits: number;
  readonly minSpan: number;
  readonly #splitVariants: readonly KernelVariant[];

  constructor(ctx: GpuContext, key: AttentionKey, options: AttentionSplitOptions = {}) {
    super(ctx, attentionVariant(key));
    this.key = key;
    this.headsPerWorkgroup = headsPerWorkgroup(key);
    this.splitTokens = options.splitTokens ?? 0;
    this.maxSplits = options.maxSplits ?? DEFAULT_MAX_SPLITS;
    this.minSpan = options.minSpan ?? DEFAULT_MIN_SPAN;
    for (const [name, v] of [["splitTokens", this.splitTokens], ["maxSplits", this.maxSplits], ["minSpan", this.minSpan]] as const) {
      if (!Number.isInteger(v) || v < (name === "splitTokens" ? 0 : 1)) throw new InvalidArgumentError(name, `expected a whole number, got ${v}`);
    }
    this.#splitVariants =
      this.splitTokens > 0
        ? (["main", "combine"] as const).map((e) => splitVariant(key, this.splitTokens, this.maxSplits, e))
        : [];
  }

  /** Bytes of the scratch buffer split steps need (0 when splitting is off). */
  get scratchBytes(): number {
    if (this.splitTokens === 0) return 0;
    return (this.splitTokens + this.splitTokens * this.key.nHeads * this.maxSplits * (this.key.headDim + 2)) * 4;
  }

  override async prepare(): Promise<void> {
    await Promise.all([super.prepare(), ...this.#splitVariants.map((v) => this.ctx.pipelines.getAsync(v))]);
  }

  /** Reusable bind groups (split ones when `b.scratch` is given and splitting is on). */
  bind(b: AttentionBindings, label = "attention"): AttentionGroups {
    const pool = this.key.pool;
    const withPool = (list: BindingInput[]) => kvPoolBindings(list, pool, b.kPool, b.vPool, this.variant);
    const k0 = b.kPool[0]!;
    const v0 = b.vPool[0]!;
    const direct = this.bindGroup(label, withPool([b.q, k0, v0, b.out, b.tokens, b.step, null, b.pageTable]));
    const [partial, combine] = this.#splitVariants;
    if (!b.scratch || !partial || !combine) return { direct };
    const group = (v: KernelVariant, list: readonly BindingInput[]) => {
      const entries: GPUBindGroupEntry[] = [];
      list.forEach((input, binding) => {
        if (input !== null) entries.push({ binding, resource: "buffer" in input ? input : { buffer: input } });
      });
      return this.ctx.device.createBindGroup({ label: `${v.name}: ${label}`, layout: this.ctx.pipelines.get(v).getBindGroupLayout(0), entries });
    };
    return {
      direct,
      split: group(partial, withPool([b.q, k0, v0, b.scratch, b.tokens, b.step, null, b.pageTable])),
      combine: group(combine, [null, null, null, b.scratch, null, b.step, b.out]),
    };
  }

  /**
   * Work-groups each token's positions are split over, for `nTokens` tokens attending over
   * at most `maxKeys` positions (at most the window, where the key has one).
   */
  splitCount(nTokens: number, maxKeys: number): number {
    if (this.splitTokens === 0 || nTokens > this.splitTokens) return 1;
    const keys = Math.min(maxKeys, this.key.window ?? Infinity);
    return Math.max(1, Math.min(this.maxSplits, Math.ceil(keys / this.minSpan)));
  }

  /**
   * Records attention for `nTokens` tokens, split when they are few and `maxKeys` (the
   * most positions any of them attends over, pos + 1) spans several tiles.
   */
  record(step: GpuStep, groups: AttentionGroups, nTokens: number, maxKeys = 0): void {
    const heads = [nTokens, this.key.nHeads / this.headsPerWorkgroup] as const;
    const splits = this.splitCount(nTokens, maxKeys);
    const [partial, combine] = this.#splitVariants;
    if (splits > 1 && groups.split && groups.combine && partial && combine) {
      step.dispatch(this.ctx.pipelines.get(partial), groups.split, [...heads, splits]);
      step.dispatch(this.ctx.pipelines.get(combine), groups.combine, [nTokens, this.key.nHeads]);
      return;
    }
    this.dispatch(step, groups.direct, heads);
  }
}
