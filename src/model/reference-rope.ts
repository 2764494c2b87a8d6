/**
 * RoPE frequencies of the CPU reference, one per rotated pair, with the model's
 * frequency scaling applied. Kept apart from the forward pass because the synthetic model
 * writer needs the same Llama 3 divisors to write `rope_freqs.weight`.
 */
import type { RopeConfig, RopeScaling } from "./config.ts";
import { longRopeDivisors } from "./reference-ops.ts";

/** The Llama 3 variant of {@link RopeScaling}. */
export type Llama3RopeScaling = Extract<RopeScaling, { type: "llama3" }>;

/** Unscaled angular frequency of pair i: base^(-2i/dims). */
export function baseFrequencies(base: number, dims: number): Float64Array {
  const freqs = new Float64Array(dims / 2);
  for (let i = 0; i < dims / 2; i++) freqs[i] = Math.pow(base, (-2 * i) / dims);
  return freqs;
}

/**
 * Llama 3's per-pair frequency divisors (what llama.cpp's converter stores as
 * `rope_freqs.weight`): pairs whose wavelength is shorter than
 * originalContextLength / highFreqFactor keep their frequency (divisor 1), those longer
 * than originalContextLength / lowFreqFactor are slowed by `factor`, and the band between
 * blends the two linearly in originalContextLength / wavelength.
 */
export function llama3RopeDivisors(scaling: Llama3RopeScaling, base: number, dims: number): Float32Array {
  const lowFreqWavelen = scaling.originalContextLength / scaling.lowFreqFactor;
  const highFreqWavelen = scaling.originalContextLength / scaling.highFreqFactor;
  return Float32Array.from(baseFrequencies(base, dims), (freq) => {
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highFreqWavelen) return 1;
    if (wavelen > lowFreqWavelen) return scaling.factor;
    const smooth =
      (scaling.originalContextLength / wavelen - scaling.lowFreqFactor) /
      (scaling.highFreqFactor - scaling.lowFreqFactor);
    return 1 / ((1 - smooth) / scaling.factor + smooth);
  });
}

/**
 * The angular frequency of each rotated pair. `divisors` (a `rope_freqs.weight` tensor)
 * wins when the file has one, as in llama.cpp; otherwise Llama 3 scaling is computed from
 * the config, and linear scaling divides every frequency by its factor.
 */
export function ropeFrequencies(rope: RopeConfig, divisors: Float32Array | null): Float64Array {
  const freqs = baseFrequencies(rope.base, rope.dims);
  const scaling = rope.scaling;
  const perPair = divisors ?? (scaling.type === "llama3" ? llama3RopeDivisors(scaling, rope.base, rope.dims) : null);
  const linear = scaling.type === "linear" ? scaling.factor : 1;
  return freqs.map((f, i) => f / ((perPair?.[i] ?? 1) * linear));
}

/**
 * The per-pair divisors a sequence that may hold `contextLength` positions rotates by:
 * `rope_freqs.weight` when the file has it; else LongRoPE's long factors when the context
 * exceeds the trained original context and its short ones otherwise (llama.cpp's
 * `get_rope_factors`, by the context the runner was given); else none.
 */
export function sequenceRopeDivisors(
  longRope: { readonly originalContextLength: number } | undefined,
  divisors: { readonly freqs: Float32Array | null; readonly longRope?: { readonly long: Float32Array; readonly short: Float32Array } },
  contextLength: number,
): Float32Array | null {
  if (divisors.freqs !== null) return divisors.freqs;
  if (longRope === undefined || divisors.longRope === undefined) return null;
  return longRopeDivisors(divisors.longRope, contextLength, longRope.originalContextLength);
}

/**
 * The angular frequencies of the sliding-window layers of a model that rotates them by a
 * base of their own (gemma3's `rope.freq_base_swa`): unscaled, with neither per-pair
 * divisors nor linear scaling (llama.cpp's rope_freq_scale_train_swa is 1); null when the
 * model has no such base.
 */
export function slidingRopeFrequencies(c: { readonly rope: RopeConfig; readonly slidingRopeBase?: number }): Float64Array | null {
  return c.slidingRopeBase === undefined ? null : baseFrequencies(c.slidingRopeBase, c.rope.dims);
}
