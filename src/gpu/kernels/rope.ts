/**
 * RoPE of Q and K with the KV-pool append fused in (shaders/rope.wgsl): per (token, head),
 * optionally RMSNorm the head first (qwen3's Q/K norm), rotate its first `ropeDims`
 * values by the token's position (partial rotary when `ropeDims` < `headDim`, Phi-4-mini;
 * per-pair frequency divisors such as LongRoPE's `rope_factors_long`/`_short` go into the
 * FREQ table, and its attention factor into `attnFactor`), and write Q back in place or K and V into the pool row
 * of the token (its TokenRecord's `kvRow`).
 *
 * ```ts
 * const rope = new RopeKernel(ctx, { headDim: 64, nHeads: 32, nKvHeads: 8, ropeDims: 64, neox: false,
 *   pool: { pageSize: 32, rowsPerBinding: 65536, bindings: 1 }, kvF16: true, qkNormEps: null });
 * const freqs = ropeFreqTable(ropeFrequencies(config.rope, divisors)); // upload as f32
 * rope.record(step, rope.bind({ q, k, v, kPool: [k0], vPool: [v0], freqs, tokens, step: info }), nTokens);
 * ```
 */
import { InvalidArgumentError } from "../../errors.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { GpuStep } from "../step.ts";
import { type BindingInput, ModelKernel, required } from "./kernel.ts";
import { type KvPoolLayout, kvPoolBindings, kvPoolDefines, kvPoolName } from "./kv-pool.ts";
import { wgslFloat } from "./tokens.ts";

/** Typed key of a RoPE variant. */
export interface RopeKey {
  readonly headDim: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  /** Leading dims of each head that are rotated (even, ≤ headDim). */
  readonly ropeDims: number;
  /** NeoX pairing (i, i + ropeDims/2); otherwise adjacent pairs (2i, 2i+1). */
  readonly neox: boolean;
  /** How the pool's rows are spread over bindings. */
  readonly pool: KvPoolLayout;
  /** Cache of f16 pairs packed in u32 words (else f32). */
  readonly kvF16: boolean;
  /** qwen3: RMSNorm each Q/K head with this epsilon before rotating; null = no norm. */
  readonly qkNormEps: number | null;
  /**
   * Multiplies cos and sin of the rotated pairs (ggml's rope `attn_factor`: LongRoPE's
   * `rope.scaling.attn_factor`, phi3); default 1.
   */
  readonly attnFactor?: number;
}

const WG = 64;

/** The variant of a key. */
export function ropeVariant(key: RopeKey): KernelVariant {
  const norm = key.qkNormEps === null ? "" : `_qknorm${wgslFloat(key.qkNormEps)}`;
  if (key.attnFactor !== undefined && !(Number.isFinite(key.attnFactor) && key.attnFactor > 0)) {
    throw new InvalidArgumentError("attnFactor", `rope attnFactor must be a finite number > 0, got ${key.attnFactor}`);
  }
  // 1 keeps the plain variant (and its name): multiplying by 1 changes nothing.
  const factor = key.attnFactor === undefined || key.attnFactor === 1 ? "" : wgslFloat(key.attnFactor);
  return {
    name: `rope_${key.neox ? "neox" : "norm"}_hd${key.headDim}_h${key.nHeads}_kv${key.nKvHeads}_r${key.ropeDims}_${kvPoolName(key.pool)}${key.kvF16 ? "_f16" : "_f32"}${norm}${factor ? `_af${factor}` : ""}`,
    file: "rope.wgsl",
    defines: {
      HEAD_DIM: key.headDim,
      N_HEADS: key.nHeads,
      N_KV_HEADS: key.nKvHeads,
      ROPE_DIMS: key.ropeDims,
      WG,
      NEOX: key.neox,
      ...kvPoolDefines(key.pool, key.kvF16, "read_write"),
      QK_NORM: key.qkNormEps !== null,
      EPS: key.qkNormEps === null ? "0.0" : wgslFloat(key.qkNormEps),
      ATTN_FACTOR: factor,
    },
  };
}

/**
 * The FREQ table of rope.wgsl from angular frequencies (radians per position, one per
 * pair, e.g. `ropeFrequencies(...)`): per pair, f = the frequency in turns per position
 * and fract(256·f), both computed in f64 and then rounded to f32.
 */
export function ropeFreqTable(radiansPerPosition: ArrayLike<number>): Float32Array {
  const out = new Float32Array(2 * radiansPerPosition.length);
  for (let i = 0; i < radiansPerPosition.length; i++) {
    const turns = radiansPerPosition[i]! / (2 * Math.PI);
    const scaled = 256 * turns;
    out[2 * i] = turns;
    out[2 * i + 1] = scaled - Math.floor(scaled);
  }
  return out;
}

/** Buffers of one RoPE dispatch. */
export interface RopeBindings {
  /** Q rows (nHeads·headDim per token), rotated in place. */
  readonly q: GPUBuffer;
  /** K and V rows (nKvHeads·headDim per token), read. */
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  /** This layer's pool: K and V, one buffer per binding (shaders/kv-pool.wgsl). */
  readonly kPool: readonly GPUBuffer[];
  readonly vPool: readonly GPUBuffer[];
  /** {@link ropeFreqTable}. */
  readonly freqs: GPUBuffer;
  /** Token table. */
  readonly tokens: GPUBuffer;
  readonly step: GPUBufferBinding;
  /** qwen3: Q norm weights then K norm weights (2·headDim f32). */
  readonly norms?: GPUBuffer;
}

/** One RoPE variant. */
export class RopeKernel extends ModelKernel {
  readonly key: RopeKey;

  constructor(ctx: GpuContext, key: RopeKey) {
    super(ctx, ropeVariant(key));
    this.key = key;
  }

  /** A reusable bind group. */
  bind(b: RopeBindings, label = "rope"): GPUBindGroup {
    const list: BindingInput[] = [b.q, b.k, b.v, b.kPool[0]!, b.vPool[0]!, b.freqs, b.tokens, b.step];
    if (this.key.qkNormEps !== null) list.push(required(b.norms, "norms", this.variant));
    return this.bindGroup(label, kvPoolBindings(list, this.key.pool, b.kPool, b.vPool, this.variant));
  }

  /** Records RoPE (and the K/V append) for `nTokens` tokens. */
  record(step: GpuStep, group: GPUBindGroup, nTokens: number): void {
    this.dispatch(step, group, [nTokens, this.key.nHeads + this.key.nKvHeads]);
  }
}
