import { describe, expect, it } from "vitest";
import { llama3RopeDivisors, ropeFrequencies } from "../../../src/model/reference-rope.ts";

describe("RoPE frequencies", () => {
  // Llama-3.2-1B: base 500000, 64 rotated dims, factor 32, low 1, high 4, original 8192.
  const scaling = { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 8192 } as const;

  it("Llama 3 divisors: 1 for short wavelengths, factor for long, blended between", () => {
    const d = llama3RopeDivisors(scaling, 500000, 64);
    expect(d).toHaveLength(32);
    // Pair 0: wavelength 2π < 8192/4, unchanged. Pair 31: wavelength 2π·500000^(62/64) ≫ 8192.
    expect(d[0]).toBe(1);
    expect(d[31]).toBe(32);
    // Pair 16 by hand: freq = 500000^-0.5 = 1/707.107, wavelength = 2π·707.107 = 4442.88,
    // smooth = (8192/4442.88 − 1)/3 = 0.281283, divisor = 1/((1 − 0.281283)/32 + 0.281283) = 3.29226.
    expect(d[16]).toBeCloseTo(3.29226, 4);
    // Only pairs 15..17 have wavelengths between 2048 and 8192 (500000^(i/32) in [326, 1304]).
    const blended = [...d].map((v, i) => [v, i] as const).filter(([v]) => v !== 1 && v !== 32).map(([, i]) => i);
    expect(blended).toEqual([15, 16, 17]);
  });

  it("a rope_freqs tensor wins over the config; linear scaling divides every frequency", () => {
    const rope = { layout: "normal", base: 10000, dims: 4, scaling: { type: "linear", factor: 2 } } as const;
    // base^(-2i/4) for i = 0, 1: 1 and 0.01; halved by linear factor 2.
    expect([...ropeFrequencies(rope, null)]).toEqual([0.5, 0.005]);
    expect([...ropeFrequencies({ ...rope, scaling: { type: "none" } }, Float32Array.from([1, 4]))]).toEqual([1, 0.0025]);
    const fromConfig = ropeFrequencies({ layout: "normal", base: 500000, dims: 64, scaling }, null);
    const fromTensor = ropeFrequencies({ layout: "normal", base: 500000, dims: 64, scaling: { type: "none" } }, llama3RopeDivisors(scaling, 500000, 64));
    expect(fromConfig).toEqual(fromTensor);
  });
});
