/**
 * Constrained decoding's token mask on the device (shaders/token-mask.wgsl): for the rows
 * whose request has a grammar, every logit of a token the grammar does not allow becomes
 * -inf just before the sampler, from a bitmask uploaded with the step (bit `i & 31` of
 * word `i >> 5` set = token i allowed, ceil(vocabSize / 32) words per masked row).
 *
 * ```ts
 * const mask = new DeviceTokenMask(ctx, { vocabSize, maxRows });
 * const sampler = new TokenMaskAroundSampler(wgslSampler, mask); // wrap it in LogprobsAroundSampler
 * await mask.prepare();                                   // compiles on first use, makes the buffer
 * const n = mask.upload([undefined, allowedBits]);        // sample row 1 is masked, row 0 is not
 * sampler.armedFor(rowParams0, n, () => forward.record(...)); // mask, then sample
 * ```
 *
 * The mask comes after the logprob kernels' copy of the raw logits (LogprobsAroundSampler
 * wraps this sampler), so reported logprobs are those of the model's raw distribution, as
 * llama.cpp's `n_probs` reports them with a grammar in its sampler chain. Nothing here
 * exists until a request has a grammar: unconstrained steps pay no upload, no dispatch and
 * no buffer.
 */
import { InvalidArgumentError } from "../../errors.ts";
import type { SamplingParams } from "../../sampling/sampler.ts";
import type { GpuContext } from "../device.ts";
import type { KernelVariant } from "../pipelines.ts";
import { ModelKernel } from "./kernel.ts";
import type { DeviceSampler, DeviceSamplerArgs } from "./sampling-hook.ts";

/** Threads per work-group: one mask word (32 logits) each. */
const WG = 64;

/** u32 words of one row's mask for a vocabulary of `vocabSize` tokens. */
export function tokenMaskWords(vocabSize: number): number {
  return Math.ceil(vocabSize / 32);
}

/** The variant for a vocabulary and a number of sample rows. */
export function tokenMaskVariant(vocabSize: number, maxRows: number): KernelVariant {
  return {
    name: `token_mask_v${vocabSize}_r${maxRows}_wg${WG}`,
    file: "token-mask.wgsl",
    defines: { WG, VOCAB: vocabSize, WORDS: tokenMaskWords(vocabSize), MAX_ROWS: maxRows },
  };
}

/** Sizes of {@link DeviceTokenMask}. */
export interface DeviceTokenMaskOptions {
  readonly vocabSize: number;
  /** Most rows one sub-step samples (the sampler's maxRows). */
  readonly maxRows: number;
}

/** The mask kernel and its buffer (header of logit rows, then the masks), made on first use. */
export class DeviceTokenMask {
  readonly #ctx: GpuContext;
  readonly #vocab: number;
  readonly #words: number;
  readonly #maxRows: number;
  readonly #kernel: ModelKernel;
  #masks: GPUBuffer | undefined;
  /** The bind group, valid while the logits buffer it names stays. */
  #group: { group: GPUBindGroup; logits: GPUBuffer } | undefined;

  constructor(ctx: GpuContext, options: DeviceTokenMaskOptions) {
    this.#ctx = ctx;
    this.#vocab = options.vocabSize;
    this.#words = tokenMaskWords(options.vocabSize);
    this.#maxRows = options.maxRows;
    this.#kernel = new ModelKernel(ctx, tokenMaskVariant(options.vocabSize, options.maxRows));
  }

  /** Compiles the kernel and makes the mask buffer (once). */
  async prepare(): Promise<void> {
    await this.#kernel.prepare();
    this.#masks ??= this.#ctx.allocator.createBuffer({
      label: "token masks",
      size: (this.#maxRows + this.#maxRows * this.#words) * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
  }

  /**
   * Queues the upload of the masks of one sub-step's sample rows (`masks[r]` for row r,
   * undefined: unconstrained) and returns how many rows are masked (the dispatch's height).
   * Throws InvalidArgumentError naming `where(r)` for a mask of the wrong length.
   */
  upload(masks: readonly (Uint32Array | undefined)[], where: (row: number) => string = (r) => `masks[${r}]`): number {
    if (masks.length > this.#maxRows) throw new InvalidArgumentError("masks", `${masks.length} rows exceed the ${this.#maxRows} rows a step samples`);
    const masked = masks.flatMap((m, r) => m ? [r] : []);
    if (masked.length === 0) return 0;
    const words = new Uint32Array(this.#maxRows + masked.length * this.#words);
    masked.forEach((r, m) => {
      const mask = masks[r]!;
      if (mask.length !== this.#words) {
        throw new InvalidArgumentError(where(r), `a token mask of ${mask.length} words; a vocabulary of ${this.#vocab} tokens needs ${this.#words}`);
      }
      words[m] = r;
      words.set(mask, this.#maxRows + m * this.#words);
    });
    this.#ctx.allocator.writeBuffer(this.#ready(), 0, words);
    return masked.length;
  }

  /** Records the mask of the `count` uploaded rows over `logits` into `pass`. */
  record(pass: GPUComputePassEncoder, logits: GPUBuffer, count: number): void {
    if (count === 0) return;
    pass.setPipeline(this.#kernel.pipeline);
    pass.setBindGroup(0, this.#groupFor(logits));
    pass.dispatchWorkgroups(Math.ceil(this.#words / WG), count);
  }

  /** Destroys the buffer (the kernel stays compiled for the next use). */
  destroy(): void {
    if (this.#masks) this.#ctx.allocator.destroy(this.#masks);
    this.#masks = undefined;
    this.#group = undefined;
  }

  #ready(): GPUBuffer {
    if (!this.#masks) throw new Error("DeviceTokenMask used before prepare()");
    return this.#masks;
  }

  #groupFor(logits: GPUBuffer): GPUBindGroup {
    if (this.#group?.logits === logits) return this.#group.group;
    // Bind only the rows that are sampled, so a larger logits buffer still fits the limit.
    const logitsRange = { buffer: logits, offset: 0, size: Math.min(logits.size, this.#maxRows * this.#vocab * 4) };
    const group = this.#kernel.bindGroup("token mask", [logitsRange, this.#ready()]);
    this.#group = { group, logits };
    return group;
  }
}

/**
 * A {@link DeviceSampler} that records the token mask before another sampler's dispatch, in
 * the one sub-step the runner armed (a mask covers one sample). Unarmed it is the inner
 * sampler and nothing more.
 */
export class TokenMaskAroundSampler implements DeviceSampler {
  readonly #inner: DeviceSampler;
  readonly #mask: DeviceTokenMask;
  /** While armed: the rowParams buffer of the masked sub-step and its masked row count. */
  #armed: { rowParams: GPUBuffer; count: number } | undefined;

  constructor(inner: DeviceSampler, mask: DeviceTokenMask) {
    this.#inner = inner;
    this.#mask = mask;
    if (inner.supports) this.supports = (p) => inner.supports!(p);
  }

  readonly supports?: (params: SamplingParams) => boolean;

  prepare(): Promise<void> {
    return this.#inner.prepare();
  }

  /**
   * Runs `body` (the recording of one step) with the mask of the `count` uploaded rows
   * recorded before the sampling whose `rowParams` is `rowParams`.
   */
  armedFor<T>(rowParams: GPUBuffer, count: number, body: () => T): T {
    this.#armed = count > 0 ? { rowParams, count } : undefined;
    try {
      return body();
    } finally {
      this.#armed = undefined;
    }
  }

  record(pass: GPUComputePassEncoder, args: DeviceSamplerArgs): void {
    if (this.#armed && this.#armed.rowParams === args.rowParams && args.rows > 0) {
      this.#mask.record(pass, args.logits, this.#armed.count);
    }
    this.#inner.record(pass, args);
  }
}
