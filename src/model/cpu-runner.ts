/**
 * A {@link ModelRunner} on the CPU reference forward pass: slow, plainly correct, and the
 * oracle the WebGPU runner is checked against. `--backend cpu` in the CLI runs it.
 */
import type { GGUFFile } from "../gguf/reader.ts";
import { type ReferenceKVCache, ReferenceModel } from "./reference.ts";
import type { ModelConfig } from "./config.ts";
import type { BatchEntry, ModelRunner, RunnerMemory } from "./runner.ts";
import { sampleToken } from "../sampling/sampler.ts";
import { yieldToEventLoop } from "./yield.ts";

/** Sizes every runner is created with. */
export interface RunnerOptions {
  /** Sequences that can hold KV state at once. */
  readonly maxSlots: number;
  /** Positions per slot; at most the model's context length (the default). */
  readonly contextLength?: number;
  /** Most tokens one step may feed, over all entries. */
  readonly maxBatchTokens: number;
}

interface Slot {
  cache: ReferenceKVCache;
  /** Every token fed to this slot, oldest first: the penalty window reads its tail. */
  history: number[];
  /** The last token sampled for this slot; fed when an entry brings no tokens. */
  lastSampled: number;
}

export class CpuRunner implements ModelRunner {
  readonly config: ModelConfig;
  readonly maxSlots: number;
  readonly contextLength: number;
  readonly maxBatchTokens: number;
  readonly description = "cpu (reference)";
  readonly #model: ReferenceModel;
  readonly #slots: Slot[];

  private constructor(model: ReferenceModel, options: RunnerOptions) {
    this.#model = model;
    this.config = model.config;
    this.maxSlots = options.maxSlots;
    this.contextLength = Math.min(options.contextLength ?? model.config.contextLength, model.config.contextLength);
    this.maxBatchTokens = options.maxBatchTokens;
    this.#slots = Array.from({ length: options.maxSlots }, () => ({
      cache: model.createCache(),
      history: [],
      lastSampled: -1,
    }));
  }

  /** Dequantizes the model in `file` to f32. */
  static async load(file: GGUFFile, options: RunnerOptions): Promise<CpuRunner> {
    return new CpuRunner(await ReferenceModel.load(file), options);
  }

  resetSlot(slot: number): void {
    const s = this.#slot(slot);
    s.cache.length = 0;
    s.history = [];
    s.lastSampled = -1;
  }

  async step(batch: readonly BatchEntry[], extraSteps: number): Promise<Int32Array[]> {
    await yieldToEventLoop();
    const results = batch.map((entry) => {
      if (!entry.sampling) {
        this.#feed(entry.slot, entry.pos, this.#tokensOf(entry));
        return new Int32Array(0);
      }
      const ids = new Int32Array(1 + extraSteps);
      let logits = this.#feed(entry.slot, entry.pos, this.#tokensOf(entry));
      let pos = entry.pos + Math.max(1, entry.tokens.length);
      for (let k = 0; k <= extraSteps; k++) {
        if (k > 0) logits = this.#feed(entry.slot, pos++, [ids[k - 1]!]);
        const s = this.#slot(entry.slot);
        ids[k] = sampleToken(logits, entry.sampling, s.history, entry.sampleIndex + k);
        s.lastSampled = ids[k]!;
      }
      return ids;
    });
    return results;
  }

  logits(slot: number, pos: number, tokens: readonly number[]): Promise<Float32Array[]> {
    const s = this.#slot(slot);
    s.cache.length = pos;
    s.history.push(...tokens);
    return Promise.resolve(this.#model.forward(tokens, s.cache, { allLogits: true }));
  }

  memory(): RunnerMemory {
    return { liveBuffers: 0, liveBytes: 0, peakBytes: 0 };
  }

  dispose(): Promise<void> {
    return Promise.resolve();
  }

  #tokensOf(entry: BatchEntry): readonly number[] {
    return entry.tokens.length > 0 ? entry.tokens : [this.#slot(entry.slot).lastSampled];
  }

  /** Runs `tokens` at `pos..` in `slot`; returns the logits after the last one. */
  #feed(slot: number, pos: number, tokens: readonly number[]): Float32Array {
    const s = this.#slot(slot);
    s.cache.length = pos;
    s.history.push(...tokens);
    return this.#model.forward(tokens, s.cache)[0]!;
  }

  #slot(slot: number): Slot {
    const s = this.#slots[slot];
    if (!s) throw new RangeError(`slot ${slot} is outside [0, ${this.maxSlots})`);
    return s;
  }
}
