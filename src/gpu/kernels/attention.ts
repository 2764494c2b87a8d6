/**
 * Causal grouped-query attention over the slotted KV cache (shaders/attention.wgsl),
 * with online softmax over tiles of positions: any context length runs in the same few
 * KiB of work-group memory.
 *
 * ```ts
 * const attn = new AttentionKernel(ctx, { headDim: 64, nHeads: 32, nKvHeads: 8, contextLength: 4096, kvF16: true });
 * attn.record(step, attn.bind({ q, kCache, vCache, out, tokens, step: info }), nTokens);
 * ```
 */
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { GpuStep } from "../step.ts";
import { ModelKernel } from "./kernel.ts";

/** Typed key of an attention variant. */
export interface AttentionKey {
  readonly headDim: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  /** Positions per slot in the cache. */
  readonly contextLength: number;
  readonly kvF16: boolean;
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

/** The variant of a key. */
export function attentionVariant(key: AttentionKey): KernelVariant {
  const gb = headsPerWorkgroup(key);
  return {
    name: `attention_hd${key.headDim}_h${key.nHeads}_kv${key.nKvHeads}_ctx${key.contextLength}_gb${gb}${key.kvF16 ? "_f16" : "_f32"}`,
    file: "attention.wgsl",
    defines: {
      HEAD_DIM: key.headDim,
      N_HEADS: key.nHeads,
      N_KV_HEADS: key.nKvHeads,
      CTX: key.contextLength,
      GB: gb,
      WG,
      KV_F16: key.kvF16,
    },
  };
}

/** Buffers of one attention dispatch. */
export interface AttentionBindings {
  /** Rotated Q rows (nHeads·headDim per token). */
  readonly q: GPUBuffer;
  /** This layer's caches. */
  readonly kCache: GPUBuffer;
  readonly vCache: GPUBuffer;
  /** Output rows, shaped like Q. */
  readonly out: GPUBuffer;
  /** Token table. */
  readonly tokens: GPUBuffer;
  readonly step: GPUBufferBinding;
}

/** One attention variant. */
export class AttentionKernel extends ModelKernel {
  readonly key: AttentionKey;
  readonly headsPerWorkgroup: number;

  constructor(ctx: GpuContext, key: AttentionKey) {
    super(ctx, attentionVariant(key));
    this.key = key;
    this.headsPerWorkgroup = headsPerWorkgroup(key);
  }

  /** A reusable bind group. */
  bind(b: AttentionBindings, label = "attention"): GPUBindGroup {
    return this.bindGroup(label, [b.q, b.kCache, b.vCache, b.out, b.tokens, b.step]);
  }

  /** Records attention for `nTokens` tokens. */
  record(step: GpuStep, group: GPUBindGroup, nTokens: number): void {
    this.dispatch(step, group, [nTokens, this.key.nHeads / this.headsPerWorkgroup]);
  }
}
