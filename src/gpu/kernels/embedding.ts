/**
 * Token embedding lookup from the (quantized) `token_embd` table as uploaded by
 * `uploadWeight` (shaders/embedding.wgsl): each fed token's row is dequantized into the
 * residual stream. Ids marked FROM_LAST_SAMPLED are resolved on the device from the
 * last-sampled buffer. A table split into parts is one dispatch per part.
 *
 * ```ts
 * const embed = new EmbeddingKernel(ctx, table);            // table: GpuWeight, any GPU type
 * await embed.prepare();
 * const groups = embed.bind({ tokens, lastSampled, x, step: info });
 * embed.record(step, groups, nTokens);
 * ```
 */
import { ggmlTypeName } from "../../gguf/ggml-type.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import type { GpuStep } from "../step.ts";
import type { GpuWeight } from "../weights.ts";
import { ModelKernel } from "./kernel.ts";
import { wgslFloat } from "./tokens.ts";

const WG = 64;

/** The variant for a table; `scale` multiplies every value looked up (gemma's √n_embd). */
export function embeddingVariant(table: GpuWeight, scale?: number): KernelVariant {
  const type = ggmlTypeName(table.type);
  const factor = scale === undefined || scale === 1 ? "" : wgslFloat(scale);
  return {
    name: `embedding_${type}_w${table.cols}${factor ? `_x${factor}` : ""}`,
    file: "embedding.wgsl",
    defines: { [type]: true, WIDTH: table.cols, WG, SCALE: factor },
  };
}

/** Buffers of the lookup. */
export interface EmbeddingBindings {
  /** Token table. */
  readonly tokens: GPUBuffer;
  /** i32 per slot: the id sampled last. */
  readonly lastSampled: GPUBuffer;
  /** Output rows (cols f32 per token). */
  readonly x: GPUBuffer;
  readonly step: GPUBufferBinding;
}

/** The lookup kernel of one table. */
export class EmbeddingKernel extends ModelKernel {
  readonly table: GpuWeight;
  /** One uniform per part: where its rows are and how they are packed. */
  readonly #params: GPUBuffer[];

  /** @param scale multiplies every embedding value (gemma's √n_embd); absent: 1. */
  constructor(ctx: GpuContext, table: GpuWeight, scale?: number) {
    super(ctx, embeddingVariant(table, scale));
    this.table = table;
    this.#params = table.parts.map((part, i) => {
      const buffer = ctx.allocator.createBuffer({
        label: `${table.name} embedding params ${i}`,
        size: 32,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      const words = new Uint32Array([
        table.rowWords,
        part.scaleWord,
        table.blocksPerRow,
        table.chunksPerRow,
        part.firstRow,
        part.rows,
        0,
        0,
      ]);
      ctx.allocator.writeBuffer(buffer, 0, words);
      return buffer;
    });
  }

  /** Reusable bind groups, one per part of the table. */
  bind(b: EmbeddingBindings, label = "embedding"): GPUBindGroup[] {
    return this.table.parts.map((part, i) =>
      this.bindGroup(`${label} part ${i}`, [part.buffer, this.#params[i]!, b.tokens, b.lastSampled, b.x, b.step]),
    );
  }

  /** Records the lookup of `nTokens` tokens. */
  record(step: GpuStep, groups: readonly GPUBindGroup[], nTokens: number): void {
    for (const group of groups) this.dispatch(step, group, [nTokens]);
  }

  /** Destroys the per-part uniforms. */
  destroy(): void {
    for (const buffer of this.#params) this.ctx.allocator.destroy(buffer);
  }
}
