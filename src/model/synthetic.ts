/**
 * Synthetic models: GGUF files with random weights but the real tensor names, shapes and
 * metadata of an architecture, so llama.cpp loads them and the runtime can be checked
 * against it without downloading a model. Presets mirror real models (Llama-3.2-1B,
 * Qwen2.5-0.5B, Qwen3-0.6B, SmolLM3-3B) or are tiny, for tests.
 *
 * The weights are built so that predictions are peaked and carry a clear margin (the top
 * token typically holds well over a third of the probability), as a trained model's do:
 * otherwise the 8-bit activation rounding of llama.cpp's quantized products alone flips the
 * top token at several percent of positions, and top-1 agreement means nothing. See
 * "How the weights are scaled" below.
 *
 * Tensors are generated lazily, each from its own seeded stream, so writing a 1B model
 * never holds more than one tensor in memory.
 */
import { InvalidArgumentError } from "../errors.ts";
import { quantize } from "../gguf/quant/index.ts";
import { fileTypeOfMix, type QuantMix, tensorTypeForMix } from "../gguf/quant-mix.ts";
import { type MetaEntry, meta, type TensorSpec, writeGGUFFile } from "../gguf/writer.ts";
import { syntheticTokenizerMetadata } from "../tokenizer/synthetic.ts";
import { ARCHITECTURE_NAMES, architecture, layerTensors } from "./arch/index.ts";
import type { ArchitectureScalars } from "./arch/types.ts";
import { type Architecture, GLOBAL_TENSOR_NAMES, LONG_ROPE_TENSOR_NAMES, type ModelConfig, ROPE_FREQS_TENSOR_NAME } from "./config.ts";
import { llama3RopeDivisors } from "./reference-rope.ts";

/** Model shapes a synthetic file can take. */
export const SYNTHETIC_PRESETS = ["tiny", "llama-3.2-1b", "qwen2.5-0.5b", "qwen3-0.6b", "smollm3-3b", "gemma-2-2b", "gemma-3-1b", "phi-3.5-mini"] as const;
/** A synthetic model shape: `tiny` for tests, or the shape of a real model. */
export type SyntheticPreset = (typeof SYNTHETIC_PRESETS)[number];

/** Architectures a synthetic file can have. */
export const SYNTHETIC_ARCHS: readonly Architecture[] = ARCHITECTURE_NAMES;

/** What to write. */
export interface SyntheticModelSpec {
  readonly arch: Architecture;
  readonly preset: SyntheticPreset;
  /** Weight types, as llama.cpp's quantize names its mixes (norms and biases stay F32). */
  readonly quant: QuantMix;
  /** Seed of the weights (default 1): the same spec and seed give the same bytes. */
  readonly seed?: number;
  /**
   * Make only the first `distinctRows` rows of each larger matrix and repeat them (valid
   * blocks, the same bytes per row and file size). For speed benchmarks of the large
   * presets, where generating and K-quantizing a billion values takes minutes.
   */
  readonly distinctRows?: number;
}

/** The architecture a real preset belongs to (`tiny` exists for every architecture). */
const PRESET_ARCH: Readonly<Record<Exclude<SyntheticPreset, "tiny">, Architecture>> = {
  "llama-3.2-1b": "llama",
  "qwen2.5-0.5b": "qwen2",
  "qwen3-0.6b": "qwen3",
  "smollm3-3b": "smollm3",
  "gemma-2-2b": "gemma2",
  "gemma-3-1b": "gemma3",
  "phi-3.5-mini": "phi3",
};

/** The architecture of a real preset, or undefined for `tiny`. */
export function presetArchitecture(preset: SyntheticPreset): Architecture | undefined {
  return preset === "tiny" ? undefined : PRESET_ARCH[preset];
}

/**
 * The model config of a synthetic preset. Tiny presets keep every matrix's input width a
 * multiple of 256, so K-quants apply to all of them, and each exercises a different path:
 * tiny llama has Llama 3 RoPE scaling whose three frequency bands all fall inside its
 * 512-token context; tiny qwen2 has Q/K/V biases and linear RoPE scaling; both have a
 * separate output matrix. Tiny qwen3 has Q/K norms, a head width (128) that is not
 * nEmbd / nHeads (64), and tied embeddings, like every real preset. Tiny smollm3 has four
 * layers, the last of which skips RoPE.
 */
export function syntheticModelConfig(arch: Architecture, preset: SyntheticPreset): ModelConfig {
  const owner = presetArchitecture(preset);
  if (owner !== undefined && owner !== arch) {
    throw new InvalidArgumentError("preset", `${preset} is a ${owner} model, not ${arch}`);
  }
  const name = `synthetic-${preset}-${arch}`;
  switch (preset) {
    case "tiny":
      return tinyConfig(arch, name);
    case "llama-3.2-1b":
      return {
        arch, name, nLayers: 16, nEmbd: 2048, nHeads: 32, nKvHeads: 8, headDim: 64, nFf: 8192,
        vocabSize: 128256, contextLength: 131072, normEps: 1e-5,
        rope: {
          layout: "normal", base: 500000, dims: 64,
          scaling: { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 8192 },
        },
        qkvBias: false, qkNorm: false, tiedEmbeddings: true,
      };
    case "qwen2.5-0.5b":
      return {
        arch, name, nLayers: 24, nEmbd: 896, nHeads: 14, nKvHeads: 2, headDim: 64, nFf: 4864,
        vocabSize: 151936, contextLength: 32768, normEps: 1e-6,
        rope: { layout: "neox", base: 1e6, dims: 64, scaling: { type: "none" } },
        qkvBias: true, qkNorm: false, tiedEmbeddings: true,
      };
    case "qwen3-0.6b":
      return {
        arch, name, nLayers: 28, nEmbd: 1024, nHeads: 16, nKvHeads: 8, headDim: 128, nFf: 3072,
        vocabSize: 151936, contextLength: 40960, normEps: 1e-6,
        rope: { layout: "neox", base: 1e6, dims: 128, scaling: { type: "none" } },
        qkvBias: false, qkNorm: true, tiedEmbeddings: true,
      };
    case "smollm3-3b":
      // HuggingFaceTB/SmolLM3-3B's config.json.
      return {
        arch, name, nLayers: 36, nEmbd: 2048, nHeads: 16, nKvHeads: 4, headDim: 128, nFf: 11008,
        vocabSize: 128256, contextLength: 65536, normEps: 1e-6,
        rope: { layout: "normal", base: 5e6, dims: 128, scaling: { type: "none" } },
        qkvBias: false, qkNorm: false, tiedEmbeddings: true,
      };
    case "phi-3.5-mini": {
      // microsoft/Phi-3.5-mini-instruct's config.json: LongRoPE from 4k to 128k, untied output.
      const { longRope: lr, attnFactor } = longRope(131072, 4096);
      return {
        arch, name, nLayers: 32, nEmbd: 3072, nHeads: 32, nKvHeads: 32, headDim: 96, nFf: 8192,
        vocabSize: 32064, contextLength: 131072, normEps: 1e-5,
        rope: { layout: "neox", base: 10000, dims: 96, scaling: { type: "none" }, attnFactor },
        longRope: lr, qkvBias: false, qkNorm: false, tiedEmbeddings: false,
      };
    }
    case "gemma-3-1b": {
      // google/gemma-3-1b-it's config.json: sliding window 512 on 5 of 6 layers (local RoPE
      // base 10,000, global 1e6), query_pre_attn_scalar 256 = head_dim, no rope scaling.
      const shape = { nLayers: 26, nEmbd: 1152, nHeads: 4, headDim: 256 };
      return {
        arch, name, ...shape, nKvHeads: 1, nFf: 6912, vocabSize: 262144, contextLength: 32768, normEps: 1e-6,
        rope: { layout: "neox", base: 1e6, dims: 256, scaling: { type: "none" } },
        qkvBias: false, qkNorm: true, tiedEmbeddings: true,
        ...familyScalars(arch, shape, { "attention.sliding_window": 512 }),
      };
    }
    case "gemma-2-2b": {
      // google/gemma-2-2b-it's config.json (query_pre_attn_scalar 256 = head_dim).
      const shape = { nLayers: 26, nEmbd: 2304, nHeads: 8, headDim: 256 };
      return {
        arch, name, ...shape, nKvHeads: 4, nFf: 9216, vocabSize: 256000, contextLength: 8192, normEps: 1e-6,
        rope: { layout: "neox", base: 10000, dims: 256, scaling: { type: "none" } },
        qkvBias: false, qkNorm: false, tiedEmbeddings: true,
        ...familyScalars(arch, shape, { "attention.sliding_window": 4096, attn_logit_softcapping: 50, final_logit_softcapping: 30 }),
      };
    }
  }
}

/**
 * The constants an architecture file reads from metadata (its `scalars`), given the values
 * a synthetic file writes for them: the config and the file agree by construction.
 */
function familyScalars(arch: Architecture, shape: { nLayers: number; nEmbd: number; nHeads: number; headDim: number }, values: Record<string, number>): ArchitectureScalars {
  const def = architecture(arch);
  const metadata = Object.fromEntries(Object.entries(values).map(([k, v]) => [`${arch}.${k}`, v]));
  return def.scalars?.(metadata, (suffix) => `${arch}.${suffix}`, shape) ?? {};
}

/**
 * LongRoPE for a trained context `contextLength` extended from `originalContextLength`: the
 * attention factor phi3's converter computes (√(1 + ln(scale) / ln(original)), for 'longrope').
 */
function longRope(contextLength: number, originalContextLength: number): Pick<ModelConfig, "longRope"> & { attnFactor: number } {
  const scale = contextLength / originalContextLength;
  // Rounded to f32, as the file stores it, so that this config and the file's agree.
  const attnFactor = scale > 1 ? Math.fround(Math.sqrt(1 + Math.log(scale) / Math.log(originalContextLength))) : 1;
  return { longRope: { originalContextLength }, attnFactor };
}

/**
 * Synthetic LongRoPE divisors, one per rotated pair, growing with the pair's wavelength as
 * real ones do: the short ones slightly (up to 1.5), the long ones up to 4 × the context
 * extension, so which of the two a runner picks changes every rotation but the first.
 */
export function syntheticLongRopeFactors(c: ModelConfig): { readonly long: Float32Array; readonly short: Float32Array } {
  const n = c.rope.dims / 2;
  const scale = c.contextLength / (c.longRope?.originalContextLength ?? c.contextLength);
  const t = (i: number) => (n > 1 ? i / (n - 1) : 0);
  return {
    long: Float32Array.from({ length: n }, (_, i) => 1 + (4 * scale - 1) * t(i) ** 2),
    short: Float32Array.from({ length: n }, (_, i) => 1 + 0.5 * t(i) ** 2),
  };
}

function tinyConfig(arch: Architecture, name: string): ModelConfig {
  const common = { arch, name, nLayers: 2, nEmbd: 256, nHeads: 4, nKvHeads: 2, nFf: 512, vocabSize: 1000, contextLength: 512 };
  switch (arch) {
    case "llama":
      return {
        ...common, headDim: 64, normEps: 1e-5,
        rope: {
          layout: "normal", base: 10000, dims: 64,
          // Wavelengths below 128 keep their frequency, above 512 are slowed 8x, between blend.
          scaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 512 },
        },
        qkvBias: false, qkNorm: false, tiedEmbeddings: false,
      };
    case "qwen2":
      return {
        ...common, headDim: 64, normEps: 1e-6,
        rope: { layout: "neox", base: 1e6, dims: 64, scaling: { type: "linear", factor: 2 } },
        qkvBias: true, qkNorm: false, tiedEmbeddings: false,
      };
    case "qwen3":
      return {
        ...common, headDim: 128, normEps: 1e-6,
        rope: { layout: "neox", base: 1e6, dims: 128, scaling: { type: "none" } },
        qkvBias: false, qkNorm: true, tiedEmbeddings: true,
      };
    case "granite":
      // Every scale away from its neutral value (Granite 3.1 2B: 12, 1/64, 0.22, 8), each
      // large enough to move the logits if it were left out.
      return {
        ...common, headDim: 64, normEps: 1e-5,
        rope: { layout: "normal", base: 10000, dims: 64, scaling: { type: "none" } },
        qkvBias: false, qkNorm: false, tiedEmbeddings: false,
        embeddingScale: 3, attentionScale: 0.09375, residualScale: 0.5, logitScale: 2,
      };
    case "phi3": {
      // Partial rotary (32 of 64 dims, as Phi-4-mini rotates 96 of 128) and LongRoPE from
      // 256 to 512 positions: at the full context the long factors apply, at 256 or less the short.
      const { longRope: lr, attnFactor } = longRope(512, 256);
      return {
        ...common, headDim: 64, normEps: 1e-5,
        rope: { layout: "neox", base: 10000, dims: 32, scaling: { type: "none" }, attnFactor },
        longRope: lr, qkvBias: false, qkNorm: false, tiedEmbeddings: false,
      };
    }
    case "gemma2": {
      // Layer 0 slides over a window of 4 positions, layer 1 sees all; soft-caps low enough
      // that they change the attention scores and the top logits.
      const shape = { nLayers: 2, nEmbd: 256, nHeads: 4, headDim: 64 };
      return {
        ...common, headDim: 64, normEps: 1e-6,
        rope: { layout: "neox", base: 10000, dims: 64, scaling: { type: "none" } },
        qkvBias: false, qkNorm: false, tiedEmbeddings: true,
        ...familyScalars(arch, shape, { "attention.sliding_window": 4, attn_logit_softcapping: 1.5, final_logit_softcapping: 15 }),
      };
    }
    case "gemma3": {
      // Three layers: 0 and 1 slide over 4 positions and rotate by the sliding base (10,000,
      // llama.cpp's default, so the file does not name it), layer 2 sees all and rotates by
      // the file's base (1e6), as gemma3's default pattern of 6 has it. Untied, unlike real
      // Gemma 3, so that greedy continuations move (a tied synthetic model repeats its token).
      const shape = { nLayers: 3, nEmbd: 256, nHeads: 4, headDim: 64 };
      return {
        ...common, ...shape, normEps: 1e-6,
        rope: { layout: "neox", base: 1e6, dims: 64, scaling: { type: "none" } },
        qkvBias: false, qkNorm: true, tiedEmbeddings: false,
        ...familyScalars(arch, shape, { "attention.sliding_window": 4 }),
      };
    }
    case "olmo2":
      // OLMo 2 1B's RoPE base and norm epsilon; its own output matrix, as OLMo 2 has.
      return {
        ...common, headDim: 64, normEps: 1e-6,
        rope: { layout: "neox", base: 500000, dims: 64, scaling: { type: "none" } },
        qkvBias: false, qkNorm: false, tiedEmbeddings: false,
      };
    case "smollm3":
      // Four layers, so that one (layer 3) runs without RoPE.
      return {
        ...common, nLayers: 4, headDim: 64, normEps: 1e-6,
        rope: { layout: "normal", base: 10000, dims: 64, scaling: { type: "none" } },
        qkvBias: false, qkNorm: false, tiedEmbeddings: false,
      };
  }
}

// ---------------------------------------------------------------------------------------
// Random numbers: xoshiro128** seeded through splitmix32, normals by Box–Muller. Each
// tensor has its own stream, derived from the model seed and the tensor's name, so its
// values do not depend on the order in which tensors are generated.

function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** FNV-1a hash of a string, to turn a tensor name into a seed. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A deterministic stream of uniform and normal numbers. */
export class SeededRandom {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  #spare: number | null = null;

  /** Seeds the stream from a number and an optional label (e.g. a tensor name). */
  constructor(seed: number, label = "") {
    const state = { s: (seed ^ hashString(label)) | 0 };
    this.#a = splitmix32(state);
    this.#b = splitmix32(state);
    this.#c = splitmix32(state);
    this.#d = splitmix32(state) | 1; // xoshiro's state must not be all zero
  }

  /** A uniform 32-bit unsigned integer (xoshiro128**). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.#b, 5), 7), 9) >>> 0;
    const t = this.#b << 9;
    this.#c ^= this.#a;
    this.#d ^= this.#b;
    this.#b ^= this.#c;
    this.#a ^= this.#d;
    this.#c ^= t;
    this.#d = rotl(this.#d, 11);
    return result;
  }

  /** A uniform number in (0, 1), never 0 (its logarithm must be finite). */
  uniform(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  /** A standard normal number. */
  normal(): number {
    if (this.#spare !== null) {
      const spare = this.#spare;
      this.#spare = null;
      return spare;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const theta = 2 * Math.PI * this.uniform();
    this.#spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** `n` normal values of the given mean and standard deviation. */
  normals(n: number, std: number, mean = 0): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + std * this.normal();
    return out;
  }
}

// ---------------------------------------------------------------------------------------
// Tensors.

// How the weights are scaled, and why. llama.cpp quantizes activations to 8 bits before
// every quantized matrix product, which moves each product by about 0.5% of its size; a
// 2-layer model has 15 such products. With unstructured random weights (embeddings of
// std 0.02, Gaussian logits) that noise flipped the top token at 4–11% of positions and gave
// a mean KL of 3–6e-3 nats against an exact f32 computation of the same quantized weights
// (measured, and reproduced by simulating the activation rounding in the reference), so no
// top-1 check could pass. Trained models avoid this by predicting with a clear margin; these
// weights get one the same way a bigram model does:
// - the token embedding is large (std 0.5), so the current token makes up about half of the
//   final residual stream, a part no activation rounding has touched;
// - an untied output matrix holds, in row π(t), a scaled copy of token t's embedding (plus
//   independent noise), for a fixed random permutation π: token t strongly predicts π(t),
//   and the layers shape the rest of the distribution and move the top token's share;
// - a tied model is the same with π = identity: each token predicts itself ("copy"), so
//   greedy continuations of tied models repeat tokens.
// Measured against llama.cpp on the tiny presets (test/node/reference): mean top-token
// probability 0.5–0.6 (untied) and 0.88 (tied); for Q8_0, Q4_0, Q4_K_M and Q6_K files a mean
// KL of 4e-5..3e-4 nats and top-1 agreement of 99.6–100% over 256 positions.

/** Standard deviation of the token embeddings (see above). */
const EMBEDDING_STD = 0.5;
/** Standard deviation of the unstructured part of the logits (the output norm's gain is set from it). */
const LOGIT_STD = 1.5;
/** Weight of the embedding copy in each untied output row (the rest is independent noise). */
const OUTPUT_BIGRAM = 0.8;

/**
 * Standard deviation of a model's token embeddings: {@link EMBEDDING_STD}, except for gemma3,
 * whose embeddings enter the stream scaled by √nEmbd (16 in the tiny preset) and whose blocks
 * add post-normed outputs of size ~1. At std 0.5 the scaled embedding (~8) drowned them: the
 * top token held a mean probability of 1.000 and greedy tokens did not change when the
 * sliding layers' RoPE base or pattern was wrong. At 1/√nEmbd (what the scaled embedding
 * makes std 1, and the order of real Gemma 3's) the top token holds 0.42 and a wrong base
 * or pattern changes most of 32 greedy tokens (measured on the tiny preset). gemma2 keeps
 * 0.5, as its files were measured with. olmo2 is the other way round: its post-normed
 * blocks (~1 each) and unscaled embeddings left the top token a mean probability of 0.08,
 * and IQ4_XS's activation rounding flipped 3.5% of top tokens; at std 1 it holds 0.59.
 */
function syntheticEmbeddingStd(c: ModelConfig): number {
  if (c.arch === "olmo2") return 1;
  return c.arch === "gemma3" ? 1 / Math.sqrt(c.nEmbd) : EMBEDDING_STD;
}

/** One synthetic tensor: GGUF name, shape (`ne`, innermost first) and its f32 values on demand. */
export interface SyntheticTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** All values, or (where the tensor is made value by value) at least the first `limit`. */
  values(limit?: number): Float32Array;
}

/** Every tensor of a synthetic model, in file order, with lazily generated f32 values. */
export function syntheticTensors(c: ModelConfig, seed: number): SyntheticTensor[] {
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  const tensors: SyntheticTensor[] = [];
  // One stream per tensor, labelled with the model's name too, so that two presets or
  // architectures sharing tensor names still get different weights.
  const stream = (label: string) => new SeededRandom(seed, `${c.name}/${label}`);
  // `prefix`: the first values do not depend on how many are made, so a limit may cut them short.
  const add = (name: string, shape: number[], make: (rng: SeededRandom, n: number) => Float32Array, prefix = true) => {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.push({ name, shape, values: (limit?: number) => make(stream(name), prefix ? Math.min(n, limit ?? n) : n) });
  };
  // A matrix of ne = [in, out]: unit-variance outputs for unit-variance inputs, times `gain`.
  const matrix = (name: string, nIn: number, nOut: number, gain = 1) =>
    add(name, [nIn, nOut], (rng, n) => rng.normals(n, gain / Math.sqrt(nIn)));
  // The blocks' writes to the residual stream (attn_output, ffn_down) shrink with depth
  // (as GPT-2 initializes them), so their sum keeps the size it has in a 2-layer model and
  // the embedding's share of the stream (see above) does not depend on the preset.
  const residualGain = Math.sqrt(2 / c.nLayers);
  const norm = (name: string, n: number, gain = 1) => add(name, [n], (rng, len) => rng.normals(len, 0.1 * gain, gain));
  const bias = (name: string, n: number) => add(name, [n], (rng, len) => rng.normals(len, 0.3));

  const embeddingStd = syntheticEmbeddingStd(c);
  const embedding = (rng: SeededRandom, n: number) => rng.normals(n, embeddingStd);
  add(GLOBAL_TENSOR_NAMES.embedding, [c.nEmbd, c.vocabSize], embedding);
  if (c.rope.scaling.type === "llama3") {
    // llama.cpp applies Llama 3 scaling only through this tensor, as its converter writes it.
    const scaling = c.rope.scaling;
    add(ROPE_FREQS_TENSOR_NAME, [c.rope.dims / 2], () => llama3RopeDivisors(scaling, c.rope.base, c.rope.dims));
  }
  if (c.longRope !== undefined) {
    const factors = syntheticLongRopeFactors(c);
    add(LONG_ROPE_TENSOR_NAMES.long, [c.rope.dims / 2], () => factors.long);
    add(LONG_ROPE_TENSOR_NAMES.short, [c.rope.dims / 2], () => factors.short);
  }
  const arch = architecture(c.arch);
  for (let l = 0; l < c.nLayers; l++) {
    for (const t of layerTensors(arch, c, l)) {
      const [nIn = 1, nOut = 1] = t.shape;
      if (t.kind === "norm") norm(t.name, nIn);
      else if (t.kind === "bias") bias(t.name, nIn);
      else matrix(t.name, nIn, nOut, t.layer?.def.writesResidual ? residualGain : 1);
    }
  }
  // logit = output row · (rmsnorm(x) * gain); rmsnorm(x) has norm √nEmbd, so rows of
  // standard deviation s give logits of standard deviation s · gain · √nEmbd.
  const outputStd = c.tiedEmbeddings ? embeddingStd : 1;
  norm(GLOBAL_TENSOR_NAMES.outputNorm, c.nEmbd, LOGIT_STD / (outputStd * Math.sqrt(c.nEmbd)));
  if (!c.tiedEmbeddings) {
    add(GLOBAL_TENSOR_NAMES.output, [c.nEmbd, c.vocabSize], (rng, n) => {
      // Regenerated from the embedding's own stream: the same values as token_embd.weight.
      const e = embedding(stream(GLOBAL_TENSOR_NAMES.embedding), n);
      const next = permutation(c.vocabSize, stream("output-permutation"));
      const out = rng.normals(n, outputStd * Math.sqrt(1 - OUTPUT_BIGRAM * OUTPUT_BIGRAM));
      const copy = (OUTPUT_BIGRAM * outputStd) / embeddingStd;
      for (let t = 0; t < c.vocabSize; t++) {
        const row = next[t]! * c.nEmbd; // row π(t) ≈ embedding of t: token t predicts π(t)
        for (let i = 0; i < c.nEmbd; i++) out[row + i] = out[row + i]! + copy * e[t * c.nEmbd + i]!;
      }
      return out;
    }, false);
  }
  return tensors;
}

/** A uniformly random permutation of 0..n-1 (Fisher–Yates). */
function permutation(n: number, rng: SeededRandom): Uint32Array {
  const p = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

// ---------------------------------------------------------------------------------------
// Metadata and the file.

/** The GGUF metadata of a synthetic model: architecture hyperparameters, then a tokenizer. */
export function syntheticMetadata(c: ModelConfig, quant: QuantMix): [string, MetaEntry][] {
  const a = c.arch;
  const entries: [string, MetaEntry][] = [
    ["general.architecture", meta.str(a)],
    ["general.name", meta.str(c.name)],
    ["general.file_type", meta.u32(fileTypeOfMix(quant))],
    ["general.quantization_version", meta.u32(2)],
    [`${a}.context_length`, meta.u32(c.contextLength)],
    [`${a}.embedding_length`, meta.u32(c.nEmbd)],
    [`${a}.block_count`, meta.u32(c.nLayers)],
    [`${a}.feed_forward_length`, meta.u32(c.nFf)],
    [`${a}.attention.head_count`, meta.u32(c.nHeads)],
    [`${a}.attention.head_count_kv`, meta.u32(c.nKvHeads)],
    [`${a}.attention.layer_norm_rms_epsilon`, meta.f32(c.normEps)],
    [`${a}.rope.freq_base`, meta.f32(c.rope.base)],
    [`${a}.rope.dimension_count`, meta.u32(c.rope.dims)],
    [`${a}.vocab_size`, meta.u32(c.vocabSize)],
  ];
  if (c.headDim !== c.nEmbd / c.nHeads) {
    entries.push([`${a}.attention.key_length`, meta.u32(c.headDim)], [`${a}.attention.value_length`, meta.u32(c.headDim)]);
  }
  if (c.rope.scaling.type === "linear") {
    entries.push([`${a}.rope.scaling.type`, meta.str("linear")], [`${a}.rope.scaling.factor`, meta.f32(c.rope.scaling.factor)]);
  }
  // Llama 3 scaling has no metadata in llama.cpp's files (its `rope.scaling.type` would be
  // refused): the `rope_freqs.weight` tensor carries it.

  // granite's scales (llama.cpp's LLM_KV_EMBEDDING_SCALE, _ATTENTION_SCALE, _RESIDUAL_SCALE, _LOGIT_SCALE).
  if (c.arch === "granite") {
    if (c.embeddingScale !== undefined) entries.push([`${a}.embedding_scale`, meta.f32(c.embeddingScale)]);
    if (c.attentionScale !== undefined) entries.push([`${a}.attention.scale`, meta.f32(c.attentionScale)]);
    if (c.residualScale !== undefined) entries.push([`${a}.residual_scale`, meta.f32(c.residualScale)]);
    if (c.logitScale !== undefined) entries.push([`${a}.logit_scale`, meta.f32(c.logitScale)]);
  }
  if (c.rope.attnFactor !== undefined) entries.push([`${a}.rope.scaling.attn_factor`, meta.f32(c.rope.attnFactor)]);
  if (c.longRope !== undefined) {
    entries.push([`${a}.rope.scaling.original_context_length`, meta.u32(c.longRope.originalContextLength)]);
  }
  if (c.slidingWindow !== undefined) entries.push([`${a}.attention.sliding_window`, meta.u32(c.slidingWindow)]);
  // gemma3's converter writes no local RoPE base (llama.cpp defaults it to 10,000): only another one is named.
  if (c.slidingRopeBase !== undefined && c.slidingRopeBase !== 10000) entries.push([`${a}.rope.freq_base_swa`, meta.f32(c.slidingRopeBase)]);
  if (c.attentionSoftcap !== undefined) entries.push([`${a}.attn_logit_softcapping`, meta.f32(c.attentionSoftcap)]);
  if (c.finalLogitSoftcap !== undefined) entries.push([`${a}.final_logit_softcapping`, meta.f32(c.finalLogitSoftcap)]);

  // Byte-level BPE families differ in the pre-tokenizer; gemma's is SentencePiece.
  const def = architecture(a);
  entries.push(...syntheticTokenizerMetadata(def.tokenizerModel ?? "gpt2", c.vocabSize, { pre: def.tokenizerPre, ...FAMILY_CHAT[a] }));
  return entries;
}

/**
 * Gemma's turns: llama.cpp's models/templates/google-gemma-2-2b-it.jinja (it keeps no Gemma 3
 * template; Gemma 3's differs only in folding a system message into the first user turn),
 * its two markers as control tokens, and `<end_of_turn>` as the end of sequence, so that a
 * chat answer ends with its turn.
 */
const GEMMA_CHAT = {
  specials: ["<start_of_turn>", "<end_of_turn>"],
  eos: "<end_of_turn>",
  chatTemplate:
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}" +
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
} as const;

/**
 * Families whose files carry their own chat markers and template (the others get ChatML).
 * Phi-3's: llama.cpp's models/templates/microsoft-Phi-3.5-mini-instruct.jinja, and the
 * marker tokens it writes; llama.cpp also requires `<|endoftext|>` in a vocabulary whose
 * model name says phi3, and Phi-3.5's files name it the end of sequence.
 */
const FAMILY_CHAT: Partial<Record<Architecture, { readonly specials: readonly string[]; readonly eos: string; readonly chatTemplate: string }>> = {
  gemma2: GEMMA_CHAT,
  gemma3: GEMMA_CHAT,
  phi3: {
    specials: ["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"],
    eos: "<|endoftext|>",
    chatTemplate:
      "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}" +
      "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}" +
      "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}" +
      "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
  },
};

/** Tensor specs for the writer: each tensor generated and quantized only when written. */
export function syntheticTensorSpecs(spec: SyntheticModelSpec): TensorSpec[] {
  const config = syntheticModelConfig(spec.arch, spec.preset);
  return syntheticTensors(config, spec.seed ?? 1).map((t) => {
    const type = tensorTypeForMix(spec.quant, t.name, t.shape, config.nLayers, {
      tiedEmbeddings: config.tiedEmbeddings,
      gqa: config.nHeads / config.nKvHeads,
    });
    const rows = t.shape.length === 2 ? t.shape[1]! : 1;
    const distinct = spec.distinctRows ?? rows;
    if (distinct >= rows) return { name: t.name, type, shape: t.shape, data: () => quantize(type, t.values()) };
    const head = () => quantize(type, t.values(distinct * t.shape[0]!).subarray(0, distinct * t.shape[0]!));
    return { name: t.name, type, shape: t.shape, data: () => repeatRows(head(), distinct, rows) };
  });
}

/** `head`, `headRows` whole rows, repeated to fill `rows` rows. */
function repeatRows(head: Uint8Array, headRows: number, rows: number): Uint8Array {
  const out = new Uint8Array((head.length / headRows) * rows);
  out.set(head);
  // Doubling copies: log2(rows / headRows) of them.
  for (let filled = head.length; filled < out.length; filled *= 2) out.copyWithin(filled, 0, Math.min(filled, out.length - filled));
  return out;
}

/** Writes a synthetic model to `path` (tensors streamed one at a time). */
export async function writeSyntheticModel(path: string, spec: SyntheticModelSpec): Promise<void> {
  const config = syntheticModelConfig(spec.arch, spec.preset);
  await writeGGUFFile(path, { metadata: syntheticMetadata(config, spec.quant), tensors: syntheticTensorSpecs(spec) });
}
