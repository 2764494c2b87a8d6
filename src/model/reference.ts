/**
 * The CPU reference forward pass: plain TypeScript, every weight in f32, every dot
 * product accumulated in a JavaScript number (f64). It exists to be read and trusted,
 * not to be fast: the GPU kernels and llama.cpp are both checked against it.
 *
 * Laid out like llama2.c's `run.c`: the weights (`ReferenceWeights`), the per-position
 * scratch (`RunState`), the KV cache (`ReferenceKVCache`) and the forward pass are separate
 * parts, each buffer with its shape beside it. Shapes are written row-major as
 * `(rows, cols)`; a GGUF matrix with `ne = [in, out]` is `(out, in)` here.
 *
 * A layer is the op list of its architecture's file (src/model/arch/), run in order; for
 * llama, qwen2 and qwen3:
 *   xb = rmsnorm(x) * attn_norm                           norm
 *   q, k, v = Wq·xb (+bq), Wk·xb (+bk), Wv·xb (+bv)      qkv         qwen2 adds the biases
 *   q, k = rmsnorm_per_head(q) * q_norm, ... * k_norm      qkNorm      qwen3 only
 *   q, k = rope(q, pos), rope(k, pos)                      rope
 *   att = softmax(q·kᵀ / √headDim) v                       attention   grouped-query, causal
 *   h = Wo · att;  x += h                                  output, residual
 *   xb = rmsnorm(x) * ffn_norm                             norm
 *   h = Wdown · (silu(Wgate·xb) ⊙ (Wup·xb));  x += h       gatedFfn, residual
 * and at the end: logits = Wout · (rmsnorm(x) * output_norm).
 */
import { GGUFError, InvalidArgumentError, ModelConfigError } from "../errors.ts";
import type { GGUFFile } from "../gguf/reader.ts";
import { dequantize } from "../gguf/quant/index.ts";
import { type ArchitectureDef, architecture, fusedParts, type LayerOp, type LayerTensorKey, layerTensors } from "./arch/index.ts";
import { type ModelConfig, GLOBAL_TENSOR_NAMES, LONG_ROPE_TENSOR_NAMES, modelConfigFromGGUF, ROPE_FREQS_TENSOR_NAME } from "./config.ts";
import { attendHead, geglu, softcap } from "./reference-ops.ts";
import { ropeFrequencies, sequenceRopeDivisors, slidingRopeFrequencies } from "./reference-rope.ts";

/**
 * Weights of one transformer layer, all f32, by role: those its architecture's table lists
 * for the config (for example `qBias` only with Q/K/V biases). Shapes (rows, cols):
 *   attnNorm, ffnNorm (nEmbd); q (nHeads·headDim, nEmbd); k, v (nKvHeads·headDim, nEmbd);
 *   qBias (nHeads·headDim); kBias, vBias (nKvHeads·headDim); qNorm, kNorm (headDim), shared
 *   by every head; o (nEmbd, nHeads·headDim); gate, up (nFf, nEmbd); down (nEmbd, nFf).
 */
export type ReferenceLayerWeights = Readonly<Partial<Record<LayerTensorKey, Float32Array>>>;

/** Every weight of a model, dequantized to f32. */
export interface ReferenceWeights {
  readonly tokenEmbd: Float32Array; // (vocab, nEmbd)
  readonly layers: readonly ReferenceLayerWeights[];
  readonly outputNorm: Float32Array; // (nEmbd)
  /** The same array as `tokenEmbd` when the embeddings are tied. */
  readonly output: Float32Array; // (vocab, nEmbd)
  /**
   * Per-pair divisors of the RoPE frequencies (`rope_freqs.weight`, Llama 3 scaling),
   * or null when the frequencies are used as they are.
   */
  readonly ropeFreqDivisors: Float32Array | null; // (ropeDims / 2)
  /** LongRoPE's divisors (phi3: `rope_factors_long`, `rope_factors_short`), when the file has them. */
  readonly longRope?: { readonly long: Float32Array; readonly short: Float32Array }; // each (ropeDims / 2)
}

/** Options of {@link ReferenceModel}. */
export interface ReferenceModelOptions {
  /**
   * The most positions a sequence may hold (default the model's context length): LongRoPE
   * models rotate by their long factors when it exceeds the trained original context.
   */
  readonly contextLength?: number;
}

/**
 * Where the forward pass keeps keys and values: position `pos` of `layer` is the row at
 * `rowOffset(pos)` of `keys(layer)` and `values(layer)` (each row nKvHeads·headDim long).
 * A contiguous cache ({@link ReferenceKVCache}) and a view of a paged pool through a page
 * table ({@link ReferenceKvPool.view}) both are one.
 */
export interface KvStore {
  /** Positions already processed; the next token goes at this position. */
  length: number;
  /** The most positions this store holds. */
  readonly maxLength: number;
  /** Makes room for positions `[0, n)`, keeping what is stored (InvalidArgumentError past `maxLength`). */
  reserve(n: number): void;
  keys(layer: number): Float32Array;
  values(layer: number): Float32Array;
  /** Offset of position `pos`'s row in `keys(layer)` and `values(layer)`. */
  rowOffset(pos: number): number;
}

/**
 * Keys and values of the positions processed so far, per layer, in position order.
 * Storage grows on demand (a 128k-token context of a 1B model would be gigabytes if
 * allocated up front).
 */
export class ReferenceKVCache implements KvStore {
  /** Positions already processed; the next token goes at this position. */
  length = 0;
  readonly #kvDim: number;
  readonly #maxLength: number;
  #keys: Float32Array[]; // per layer (capacity, nKvHeads * headDim)
  #values: Float32Array[]; // per layer (capacity, nKvHeads * headDim)
  #capacity = 0;

  /** @param maxLength the context length; positions beyond it are refused. */
  constructor(nLayers: number, kvDim: number, maxLength: number) {
    this.#kvDim = kvDim;
    this.#maxLength = maxLength;
    this.#keys = Array.from({ length: nLayers }, () => new Float32Array(0));
    this.#values = Array.from({ length: nLayers }, () => new Float32Array(0));
  }

  /** The most positions this cache holds (the model's context length). */
  get maxLength(): number {
    return this.#maxLength;
  }

  /** Keys of `layer`, row `pos` = position `pos` (valid rows: those written so far). */
  keys(layer: number): Float32Array {
    return this.#keys[layer]!;
  }

  /** Values of `layer`, laid out like `keys`. */
  values(layer: number): Float32Array {
    return this.#values[layer]!;
  }

  rowOffset(pos: number): number {
    return pos * this.#kvDim;
  }

  /** Makes room for positions `[0, n)`, keeping what is stored. */
  reserve(n: number): void {
    if (n > this.#maxLength) {
      throw new InvalidArgumentError("tokens", `position ${n - 1} is past the context length ${this.#maxLength}`);
    }
    if (n <= this.#capacity) return;
    const capacity = Math.min(this.#maxLength, Math.max(n, this.#capacity * 2, 16));
    this.#keys = this.#keys.map((old) => grown(old, capacity * this.#kvDim));
    this.#values = this.#values.map((old) => grown(old, capacity * this.#kvDim));
    this.#capacity = capacity;
  }
}

/**
 * A paged KV pool: `pageCount` pages of `pageSize` positions, per layer K and V, shared by
 * every sequence; a sequence sees it through its page table (`view`). Storage grows on
 * demand up to the highest page written, so an unused pool costs nothing.
 */
export class ReferenceKvPool {
  readonly pageSize: number;
  readonly pageCount: number;
  readonly #kvDim: number;
  #keys: Float32Array[]; // per layer (capacity pages · pageSize, nKvHeads * headDim)
  #values: Float32Array[];
  #capacityPages = 0;

  constructor(nLayers: number, kvDim: number, pageSize: number, pageCount: number) {
    this.#kvDim = kvDim;
    this.pageSize = pageSize;
    this.pageCount = pageCount;
    this.#keys = Array.from({ length: nLayers }, () => new Float32Array(0));
    this.#values = Array.from({ length: nLayers }, () => new Float32Array(0));
  }

  /**
   * The store of one sequence: position p lives in page `pages[p / pageSize]`. `length` is
   * where the next token goes; positions past the table's pages are refused.
   */
  view(pages: readonly number[], length: number): KvStore {
    const pool = this;
    const kvDim = this.#kvDim;
    const shift = Math.log2(this.pageSize);
    const mask = this.pageSize - 1;
    return {
      length,
      maxLength: pages.length * this.pageSize,
      reserve(n: number): void {
        if (n > this.maxLength) {
          throw new InvalidArgumentError("pages", `position ${n - 1} is past the ${pages.length} pages of the page table`);
        }
        pool.#reservePages(Math.max(...pages.slice(0, Math.ceil(n / pool.pageSize)), -1) + 1);
      },
      keys: (layer) => this.#keys[layer]!,
      values: (layer) => this.#values[layer]!,
      rowOffset: (pos) => ((pages[pos >> shift]! << shift) + (pos & mask)) * kvDim,
    };
  }

  /** Copies page `from` onto page `to` (K and V, every layer). */
  copyPage(from: number, to: number): void {
    this.#reservePages(Math.max(from, to) + 1);
    const rows = this.pageSize * this.#kvDim;
    for (const arrays of [this.#keys, this.#values]) {
      for (const a of arrays) a.copyWithin(to * rows, from * rows, (from + 1) * rows);
    }
  }

  #reservePages(n: number): void {
    if (n <= this.#capacityPages) return;
    const pages = Math.min(this.pageCount, Math.max(n, this.#capacityPages * 2, 4));
    const length = pages * this.pageSize * this.#kvDim;
    this.#keys = this.#keys.map((old) => grown(old, length));
    this.#values = this.#values.map((old) => grown(old, length));
    this.#capacityPages = pages;
  }
}

/** A copy of `old` in a zero-padded array of `length` values. */
function grown(old: Float32Array, length: number): Float32Array {
  const next = new Float32Array(length);
  next.set(old);
  return next;
}

/** Options of {@link ReferenceModel.forward}. */
export interface ForwardOptions {
  /** Return the logits after every token, not only after the last one. */
  readonly allLogits?: boolean;
  /**
   * Return the final hidden states (after the output norm, before the LM head) instead of
   * logits: what an embedding pools.
   */
  readonly hidden?: boolean;
}

/** Scratch buffers for one position, reused across positions. */
class RunState {
  readonly x: Float32Array; // (nEmbd) residual stream
  readonly xb: Float32Array; // (nEmbd) normed input of a block
  readonly q: Float32Array; // (nHeads * headDim)
  readonly k: Float32Array; // (nKvHeads * headDim)
  readonly v: Float32Array; // (nKvHeads * headDim)
  readonly attnOut: Float32Array; // (nHeads * headDim) attention-weighted values
  readonly scores: Float32Array; // (contextLength) one head's attention weights
  readonly rows: Float64Array; // (contextLength) where each position's K/V row is in the store
  readonly hb: Float32Array; // (nEmbd) output of Wo or Wdown
  readonly gate: Float32Array; // (nFf)
  readonly up: Float32Array; // (nFf)
  readonly ropeCos: Float32Array; // (ropeDims / 2)
  readonly ropeSin: Float32Array; // (ropeDims / 2)
  /** The same for the sliding-window layers' own frequencies (gemma3), when the model has them. */
  readonly slidingRopeCos: Float32Array; // (ropeDims / 2)
  readonly slidingRopeSin: Float32Array; // (ropeDims / 2)

  constructor(c: ModelConfig) {
    this.x = new Float32Array(c.nEmbd);
    this.xb = new Float32Array(c.nEmbd);
    this.q = new Float32Array(c.nHeads * c.headDim);
    this.k = new Float32Array(c.nKvHeads * c.headDim);
    this.v = new Float32Array(c.nKvHeads * c.headDim);
    this.attnOut = new Float32Array(c.nHeads * c.headDim);
    this.scores = new Float32Array(c.contextLength);
    this.rows = new Float64Array(c.contextLength);
    this.hb = new Float32Array(c.nEmbd);
    this.gate = new Float32Array(c.nFf);
    this.up = new Float32Array(c.nFf);
    this.ropeCos = new Float32Array(c.rope.dims / 2);
    this.ropeSin = new Float32Array(c.rope.dims / 2);
    this.slidingRopeCos = new Float32Array(c.rope.dims / 2);
    this.slidingRopeSin = new Float32Array(c.rope.dims / 2);
  }
}

/** A model held entirely in f32 on the CPU, with a forward pass written for clarity. */
export class ReferenceModel {
  readonly config: ModelConfig;
  readonly weights: ReferenceWeights;
  readonly #arch: ArchitectureDef;
  /** Angular frequency of each rotated pair, scaling already applied. */
  readonly #ropeFreqs: Float64Array; // (ropeDims / 2)
  readonly #ropeAttnFactor: number;
  /** The sliding-window layers' frequencies (gemma3's `rope.freq_base_swa`, unscaled), or null. */
  readonly #slidingRopeFreqs: Float64Array | null; // (ropeDims / 2)
  readonly #state: RunState;

  /** Wraps weights already in f32; shapes are checked against `config`. */
  constructor(config: ModelConfig, weights: ReferenceWeights, options: ReferenceModelOptions = {}) {
    this.#arch = architecture(config.arch);
    checkWeightShapes(this.#arch, config, weights);
    this.config = config;
    this.weights = weights;
    const divisors = { freqs: weights.ropeFreqDivisors, ...(weights.longRope ? { longRope: weights.longRope } : {}) };
    this.#ropeAttnFactor = config.rope.attnFactor ?? 1;
    this.#ropeFreqs = ropeFrequencies(config.rope, sequenceRopeDivisors(config.longRope, divisors, options.contextLength ?? config.contextLength));
    this.#slidingRopeFreqs = slidingRopeFrequencies(config);
    this.#state = new RunState(config);
  }

  /** Reads a GGUF file and dequantizes every weight to f32 (any quant type `dequantize` knows). */
  static async load(file: GGUFFile, options: ReferenceModelOptions = {}): Promise<ReferenceModel> {
    const config = modelConfigFromGGUF(file);
    return new ReferenceModel(config, await loadWeights(file, config), options);
  }

  /**
   * An empty KV cache for this model.
   * @param maxLength most positions it holds: the model's context length unless less is given.
   */
  createCache(maxLength: number = this.config.contextLength): ReferenceKVCache {
    const c = this.config;
    if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > c.contextLength) {
      throw new InvalidArgumentError("maxLength", `${maxLength} is not a whole number in [1, ${c.contextLength}]`);
    }
    return new ReferenceKVCache(c.nLayers, c.nKvHeads * c.headDim, maxLength);
  }

  /**
   * Runs `tokens` at positions `cache.length ..` and appends them to `cache`, so a prompt
   * followed by generated tokens gives the same logits as one long prompt.
   * @returns the logits after the last token (one array), or after every token with `allLogits`.
   */
  forward(tokens: readonly number[], cache: KvStore, options: ForwardOptions = {}): Float32Array[] {
    if (tokens.length === 0) throw new InvalidArgumentError("tokens", "no tokens to run");
    for (const t of tokens) {
      if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) {
        throw new InvalidArgumentError("tokens", `token id ${t} is outside the vocabulary [0, ${this.config.vocabSize})`);
      }
    }
    cache.reserve(cache.length + tokens.length);
    const out: Float32Array[] = [];
    tokens.forEach((token, i) => {
      this.#forwardOne(token, cache);
      if (options.allLogits || i === tokens.length - 1) out.push(options.hidden ? this.#hidden() : this.#logits());
    });
    return out;
  }

  /** Greedy decoding from `prompt`: the `n` tokens of highest logit, one after another. */
  greedy(prompt: readonly number[], n: number): number[] {
    const cache = this.createCache();
    let logits = this.forward(prompt, cache)[0]!;
    const generated: number[] = [];
    for (let i = 0; i < n; i++) {
      const next = argmax(logits);
      generated.push(next);
      if (i < n - 1) logits = this.forward([next], cache)[0]!;
    }
    return generated;
  }

  /** One token through every layer; leaves the final residual stream in `state.x`. */
  #forwardOne(token: number, cache: KvStore): void {
    const c = this.config;
    const s = this.#state;
    const pos = cache.length;
    s.x.set(this.weights.tokenEmbd.subarray(token * c.nEmbd, (token + 1) * c.nEmbd));
    if (c.embeddingScale !== undefined) scaleInPlace(s.x, c.embeddingScale);
    this.#prepareRope(pos);
    for (let t = 0; t <= pos; t++) s.rows[t] = cache.rowOffset(t);
    this.weights.layers.forEach((w, layer) => {
      for (const op of this.#arch.layerOps(c, layer)) this.#run(op, w, layer, pos, cache);
    });
    cache.length = pos + 1;
  }

  /** One op of a layer (see arch/types.ts for what each does). */
  #run(op: LayerOp, w: ReferenceLayerWeights, layer: number, pos: number, cache: KvStore): void {
    const c = this.config;
    const s = this.#state;
    switch (op.op) {
      case "norm":
        return rmsNorm(s.xb, s.x, need(w, op.weight, layer), c.normEps);
      case "qkv": {
        const input = op.input === "x" ? s.x : s.xb;
        matVec(s.q, need(w, "q", layer), input);
        matVec(s.k, need(w, "k", layer), input);
        matVec(s.v, need(w, "v", layer), input);
        if (op.bias) {
          addInPlace(s.q, need(w, "qBias", layer));
          addInPlace(s.k, need(w, "kBias", layer));
          addInPlace(s.v, need(w, "vBias", layer));
        }
        return;
      }
      case "qkNorm":
        if (op.over === "all") {
          rmsNorm(s.q, s.q, need(w, "qNorm", layer), c.normEps);
          return rmsNorm(s.k, s.k, need(w, "kNorm", layer), c.normEps);
        }
        rmsNormPerHead(s.q, c.nHeads, c.headDim, need(w, "qNorm", layer), c.normEps);
        rmsNormPerHead(s.k, c.nKvHeads, c.headDim, need(w, "kNorm", layer), c.normEps);
        return;
      case "rope": {
        const table = op.frequencies === "sliding" ? this.#slidingRopeTable(layer) : { cos: s.ropeCos, sin: s.ropeSin };
        this.#applyRope(s.q, c.nHeads, table);
        this.#applyRope(s.k, c.nKvHeads, table);
        return;
      }
      case "attention":
        return this.#attention(layer, pos, cache, op.window);
      case "output":
        return matVec(s.hb, need(w, "o", layer), s.attnOut);
      case "residual":
        // granite scales the block's output (ggml_scale rounds it to f32 before the add).
        if (c.residualScale !== undefined) scaleInPlace(s.hb, c.residualScale);
        return addInPlace(s.x, s.hb);
      case "postNorm":
        rmsNorm(s.hb, s.hb, need(w, op.weight, layer), c.normEps);
        return addInPlace(s.x, s.hb);
      case "gatedFfn":
        return this.#gatedFfn(w, layer, op.activation, op.input === "x" ? s.x : s.xb);
    }
  }

  /** Stores this position's key and value in the cache; attnOut = attention over 0..pos. */
  #attention(layer: number, pos: number, cache: KvStore, window: number | undefined): void {
    const c = this.config;
    const s = this.#state;
    cache.keys(layer).set(s.k, s.rows[pos]!);
    cache.values(layer).set(s.v, s.rows[pos]!);
    if (window !== undefined || c.attentionScale !== undefined || c.attentionSoftcap !== undefined) {
      return this.#scoredAttention(layer, pos, cache, window);
    }

    const keys = cache.keys(layer);
    const values = cache.values(layer);
    const groupSize = c.nHeads / c.nKvHeads; // query heads sharing one KV head
    const scale = 1 / Math.sqrt(c.headDim);
    for (let h = 0; h < c.nHeads; h++) {
      const qOff = h * c.headDim;
      const kvOff = Math.floor(h / groupSize) * c.headDim;
      // Causal: position `pos` sees positions 0..pos, itself included.
      for (let t = 0; t <= pos; t++) {
        const kOff = s.rows[t]! + kvOff;
        let dot = 0;
        for (let i = 0; i < c.headDim; i++) dot += s.q[qOff + i]! * keys[kOff + i]!;
        s.scores[t] = dot * scale;
      }
      softmax(s.scores, pos + 1);
      for (let i = 0; i < c.headDim; i++) {
        let acc = 0;
        for (let t = 0; t <= pos; t++) acc += s.scores[t]! * values[s.rows[t]! + kvOff + i]!;
        s.attnOut[qOff + i] = acc;
      }
    }
  }

  /**
   * The attention step of a family that changes the scores (gemma: its scale, soft-cap and
   * sliding window), through reference-ops' attendHead, which rounds as the loop above.
   */
  #scoredAttention(layer: number, pos: number, cache: KvStore, window: number | undefined): void {
    const c = this.config;
    const s = this.#state;
    const keys = cache.keys(layer);
    const values = cache.values(layer);
    const groupSize = c.nHeads / c.nKvHeads;
    const scoring = {
      scale: c.attentionScale ?? 1 / Math.sqrt(c.headDim),
      ...(c.attentionSoftcap !== undefined ? { softcap: c.attentionSoftcap } : {}),
      ...(window !== undefined ? { window } : {}),
    };
    for (let h = 0; h < c.nHeads; h++) {
      const qOff = h * c.headDim;
      const kvOff = Math.floor(h / groupSize) * c.headDim;
      const row = (store: Float32Array) => (p: number) => store.subarray(s.rows[p]! + kvOff, s.rows[p]! + kvOff + c.headDim);
      const out = s.attnOut.subarray(qOff, qOff + c.headDim);
      attendHead(out, s.q.subarray(qOff, qOff + c.headDim), row(keys), row(values), pos, scoring, s.scores);
    }
  }

  /** hb = gated feed-forward of `input` (xb, or x in olmo2): SwiGLU (silu) or GeGLU (gelu). */
  #gatedFfn(w: ReferenceLayerWeights, layer: number, activation: "silu" | "gelu", input: Float32Array): void {
    const c = this.config;
    const s = this.#state;
    matVec(s.gate, need(w, "gate", layer), input);
    matVec(s.up, need(w, "up", layer), input);
    if (activation === "gelu") {
      geglu(s.gate, s.up);
      return matVec(s.hb, need(w, "down", layer), s.gate);
    }
    for (let i = 0; i < c.nFf; i++) {
      const g = s.gate[i]!;
      s.gate[i] = (g / (1 + Math.exp(-g))) * s.up[i]!; // silu(g) * up
    }
    matVec(s.hb, need(w, "down", layer), s.gate);
  }

  /** Logits of the current residual stream (a fresh array). */
  #logits(): Float32Array {
    const logits = new Float32Array(this.config.vocabSize);
    matVec(logits, this.weights.output, this.#hidden());
    if (this.config.finalLogitSoftcap !== undefined) softcap(logits, this.config.finalLogitSoftcap);
    // granite: llama.cpp multiplies by the f32 reciprocal of logit_scale.
    if (this.config.logitScale !== undefined) scaleInPlace(logits, Math.fround(1 / this.config.logitScale));
    return logits;
  }

  /** The current residual stream after the output norm (a fresh array). */
  #hidden(): Float32Array {
    const c = this.config;
    const s = this.#state;
    rmsNorm(s.xb, s.x, this.weights.outputNorm, c.normEps);
    return s.xb.slice();
  }

  /** cos/sin of each rotated pair's angle at `pos`, shared by every head of every layer. */
  #prepareRope(pos: number): void {
    const s = this.#state;
    this.#ropeFreqs.forEach((freq, i) => {
      const angle = pos * freq;
      // LongRoPE's attention factor scales cos and sin, as ggml's rope_yarn does with mscale.
      s.ropeCos[i] = Math.cos(angle) * this.#ropeAttnFactor;
      s.ropeSin[i] = Math.sin(angle) * this.#ropeAttnFactor;
    });
    // The sliding layers' frequencies are unscaled (llama.cpp's freq_scale_swa 1), but gemma3
    // passes them the same attention factor.
    this.#slidingRopeFreqs?.forEach((freq, i) => {
      s.slidingRopeCos[i] = Math.cos(pos * freq) * this.#ropeAttnFactor;
      s.slidingRopeSin[i] = Math.sin(pos * freq) * this.#ropeAttnFactor;
    });
  }

  /** The sliding layers' cos/sin tables; ModelConfigError when the config has no `slidingRopeBase`. */
  #slidingRopeTable(layer: number): { readonly cos: Float32Array; readonly sin: Float32Array } {
    if (this.#slidingRopeFreqs === null) {
      throw new ModelConfigError(`blk.${layer}`, "the layer rotates by the sliding-window RoPE frequencies, but the config has no slidingRopeBase");
    }
    return { cos: this.#state.slidingRopeCos, sin: this.#state.slidingRopeSin };
  }

  /**
   * Rotates the first `rope.dims` values of each head. `normal` pairs adjacent values
   * (2i, 2i+1); `neox` pairs the two halves (i, i + dims/2). Both give pair i the angle
   * pos · freq[i]; the rest of the head (dims..headDim) is left alone.
   */
  #applyRope(vec: Float32Array, nHeads: number, table: { readonly cos: Float32Array; readonly sin: Float32Array }): void {
    const c = this.config;
    const half = c.rope.dims / 2;
    for (let h = 0; h < nHeads; h++) {
      const base = h * c.headDim;
      for (let i = 0; i < half; i++) {
        const [a, b] = c.rope.layout === "normal" ? [base + 2 * i, base + 2 * i + 1] : [base + i, base + i + half];
        const x0 = vec[a]!;
        const x1 = vec[b]!;
        const cos = table.cos[i]!;
        const sin = table.sin[i]!;
        vec[a] = x0 * cos - x1 * sin;
        vec[b] = x0 * sin + x1 * cos;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Math kernels: the few operations the forward pass is made of.

/** out = W · x, with W of shape (out.length, x.length) row-major. */
export function matVec(out: Float32Array, w: Float32Array, x: Float32Array): void {
  const n = x.length;
  for (let r = 0; r < out.length; r++) {
    const off = r * n;
    let acc = 0;
    for (let i = 0; i < n; i++) acc += w[off + i]! * x[i]!;
    out[r] = acc;
  }
}

/** out = x / sqrt(mean(x²) + eps) * weight. */
export function rmsNorm(out: Float32Array, x: Float32Array, weight: Float32Array, eps: number): void {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * inv * weight[i]!;
}

/** RMSNorm of each `headDim` slice of `vec` in place, every head sharing `weight` (qwen3). */
function rmsNormPerHead(vec: Float32Array, nHeads: number, headDim: number, weight: Float32Array, eps: number): void {
  for (let h = 0; h < nHeads; h++) {
    const head = vec.subarray(h * headDim, (h + 1) * headDim);
    rmsNorm(head, head, weight, eps);
  }
}

/** Softmax of `x[0..n)` in place (max subtracted first, so large scores do not overflow). */
export function softmax(x: Float32Array, n: number = x.length): void {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, x[i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp(x[i]! - max);
    x[i] = e;
    sum += e;
  }
  for (let i = 0; i < n; i++) x[i] = x[i]! / sum;
}

/** The weight `key` of a layer; ModelConfigError when the architecture's op needs one the layer lacks. */
function need(w: ReferenceLayerWeights, key: LayerTensorKey, layer: number): Float32Array {
  const array = w[key];
  if (!array) throw new ModelConfigError(`blk.${layer}.${key}`, "weight is missing (an op of the layer reads it)");
  return array;
}

function scaleInPlace(x: Float32Array, factor: number): void {
  for (let i = 0; i < x.length; i++) x[i] = x[i]! * factor;
}

function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] = x[i]! + y[i]!;
}

/** Index of the largest value (the first one on ties). */
export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

// ---------------------------------------------------------------------------------------
// Loading.

/** Reads and dequantizes every tensor the forward pass uses (the architecture's table). */
async function loadWeights(file: GGUFFile, c: ModelConfig): Promise<ReferenceWeights> {
  const read = (name: string) => readF32(file, name);
  const arch = architecture(c.arch);
  const layers: ReferenceLayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const layer: Partial<Record<LayerTensorKey, Float32Array>> = {};
    const cols = new Map<LayerTensorKey, number>();
    for (const t of layerTensors(arch, c, l)) {
      layer[t.layer!.def.key] = await read(t.name);
      cols.set(t.layer!.def.key, t.shape[0]!);
    }
    // A fused matrix's parts are views of its rows (no copy), as on the GPU.
    for (const part of fusedParts(arch, c)) {
      const width = cols.get(part.from)!;
      layer[part.key] = need(layer, part.from, l).subarray(part.firstRow * width, (part.firstRow + part.rows) * width);
    }
    layers.push(layer);
  }
  const tokenEmbd = await read(GLOBAL_TENSOR_NAMES.embedding);
  return {
    tokenEmbd,
    layers,
    outputNorm: await read(GLOBAL_TENSOR_NAMES.outputNorm),
    output: c.tiedEmbeddings ? tokenEmbd : await read(GLOBAL_TENSOR_NAMES.output),
    ropeFreqDivisors: c.ropeFreqFactors !== undefined ? await read(c.ropeFreqFactors) : null,
    ...(c.longRope ? { longRope: { long: await read(LONG_ROPE_TENSOR_NAMES.long), short: await read(LONG_ROPE_TENSOR_NAMES.short) } } : {}),
  };
}

/** One tensor of `file` as f32 values. */
async function readF32(file: GGUFFile, name: string): Promise<Float32Array> {
  const info = file.tensor(name);
  if (!info) throw new GGUFError("TENSOR_MISSING", `tensor "${name}" is missing`, { field: name });
  return dequantize(info.type, await file.readTensor(info), info.nElements);
}

/** Throws ModelConfigError when a weight's length disagrees with the config. */
function checkWeightShapes(arch: ArchitectureDef, c: ModelConfig, w: ReferenceWeights): void {
  const expect = (name: string, array: Float32Array | null, length: number) => {
    if (!array) throw new ModelConfigError(name, "weight is missing");
    if (array.length !== length) {
      throw new ModelConfigError(name, `holds ${array.length} values, expected ${length} from the model config`);
    }
  };
  if (c.nHeads % c.nKvHeads !== 0) {
    throw new ModelConfigError("nKvHeads", `${c.nHeads} query heads cannot be grouped over ${c.nKvHeads} KV heads`);
  }
  if (c.rope.dims % 2 !== 0 || c.rope.dims > c.headDim) {
    throw new ModelConfigError("rope.dims", `${c.rope.dims} must be even and at most headDim ${c.headDim}`);
  }
  expect(GLOBAL_TENSOR_NAMES.embedding, w.tokenEmbd, c.vocabSize * c.nEmbd);
  expect(GLOBAL_TENSOR_NAMES.outputNorm, w.outputNorm, c.nEmbd);
  expect(GLOBAL_TENSOR_NAMES.output, w.output, c.vocabSize * c.nEmbd);
  if (w.ropeFreqDivisors) expect(c.ropeFreqFactors ?? ROPE_FREQS_TENSOR_NAME, w.ropeFreqDivisors, c.rope.dims / 2);
  if (c.longRope) {
    expect(LONG_ROPE_TENSOR_NAMES.long, w.longRope?.long ?? null, c.rope.dims / 2);
    expect(LONG_ROPE_TENSOR_NAMES.short, w.longRope?.short ?? null, c.rope.dims / 2);
  }
  if (w.layers.length !== c.nLayers) {
    throw new ModelConfigError("nLayers", `config says ${c.nLayers} layers, weights hold ${w.layers.length}`);
  }
  w.layers.forEach((l, i) => {
    for (const t of layerTensors(arch, c, i)) {
      expect(t.name, l[t.layer!.def.key] ?? null, t.shape.reduce((a, b) => a * b, 1));
    }
  });
}
