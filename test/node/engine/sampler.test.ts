/**
 * The CPU sampler (src/engine/sampler.ts), the definition the GPU sampler is checked against.
 * Expected values are hand-computed (penalties, thresholds), derived from an independent
 * Python implementation of murmur3's finalizer (hash values), or exact probabilities in
 * f64 checked with chi-square tests.
 */
import { describe, expect, it } from "vitest";
import type { SamplingParams } from "../../../src/model/runner.ts";
import {
  applyPenalties,
  argmax,
  GREEDY,
  keepThreshold,
  mix32,
  penaltyCounts,
  sampleToken,
  uniform,
} from "../../../src/sampling/sampler.ts";
import { seededRandom } from "../quant/random.ts";

const SAMPLE: SamplingParams = { ...GREEDY, temperature: 1 };

/**
 * Upper 1e-3 quantiles of chi-square by degrees of freedom (scipy.stats.chi2.isf(1e-3, df)).
 * A correct sampler exceeds one with probability 1e-3 if its draws behave like independent
 * uniforms; every test here uses a fixed seed, so the outcome is deterministic, and a
 * sampler off by a few percent on one category gives statistics far above these.
 */
const CHI2_CRIT_1E3: Readonly<Record<number, number>> = { 2: 13.816, 3: 16.266, 63: 103.442 };

function chiSquare(observed: readonly number[], expected: readonly number[]): number {
  return observed.reduce((acc, o, i) => acc + (o - expected[i]!) ** 2 / expected[i]!, 0);
}

/** Counts of each token over `draws` samples with counters 0..draws-1. */
function frequencies(logits: Float32Array, p: SamplingParams, draws: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  for (let k = 0; k < draws; k++) counts[sampleToken(logits, p, [], k)]!++;
  return counts;
}

function randomLogits(n: number, seed: number, scale = 3): Float32Array {
  const rand = seededRandom(seed);
  return Float32Array.from({ length: n }, () => scale * (rand() + rand() + rand() - 1.5));
}

describe("mix32 and uniform", () => {
  it("match an independent implementation of murmur3's finalizer", () => {
    // From a Python implementation (arbitrary-precision ints masked to 32 bits).
    expect(mix32(0)).toBe(0);
    expect(mix32(1)).toBe(0x514e28b7);
    expect(mix32(0xdeadbeef)).toBe(0x0de5c6a9);
    expect(uniform(0, 0)).toBe(0.9343010783195496);
    expect(uniform(42, 7)).toBe(0.7645609974861145);
    expect(uniform(0xffffffff, 123456)).toBe(0.447609007358551);
  });

  it("is a pure function of (seed, counter), on a 2^-24 grid in [0, 1)", () => {
    for (let k = 0; k < 1000; k++) {
      const u = uniform(1234, k);
      expect(uniform(1234, k)).toBe(u);
      expect(u).toBeGreaterThanOrEqual(0);
      expect(u).toBeLessThan(1);
      expect(Number.isInteger(u * 16777216)).toBe(true);
    }
    expect(uniform(1234, 5)).not.toBe(uniform(1234, 6));
    expect(uniform(1234, 5)).not.toBe(uniform(1235, 5));
  });

  it("is roughly uniform over counters and over seeds (chi-square, 64 buckets)", () => {
    const n = 64_000;
    const expected = new Array<number>(64).fill(n / 64);
    const byCounter = new Array<number>(64).fill(0);
    const bySeed = new Array<number>(64).fill(0);
    for (let k = 0; k < n; k++) {
      byCounter[Math.floor(uniform(99, k) * 64)]!++;
      bySeed[Math.floor(uniform(k, 0) * 64)]!++;
    }
    expect(chiSquare(byCounter, expected)).toBeLessThan(CHI2_CRIT_1E3[63]!);
    expect(chiSquare(bySeed, expected)).toBeLessThan(CHI2_CRIT_1E3[63]!);
  });
});

describe("greedy", () => {
  it("takes the first index of the largest logit", () => {
    expect(sampleToken(Float32Array.from([1, 3, 3, 2]), GREEDY, [], 0)).toBe(1);
    expect(sampleToken(Float32Array.from([-5, -1, -1]), GREEDY, [], 9)).toBe(1);
    expect(argmax(Float32Array.from([-Infinity, -Infinity]))).toBe(0);
  });

  it("equals topK = 1 and a tiny topP at any temperature", () => {
    for (let seed = 0; seed < 50; seed++) {
      const logits = randomLogits(200, seed);
      const best = argmax(logits);
      expect(sampleToken(logits, GREEDY, [], seed)).toBe(best);
      expect(sampleToken(logits, { ...SAMPLE, topK: 1, temperature: 2, seed }, [], seed)).toBe(best);
      expect(sampleToken(logits, { ...SAMPLE, topP: 1e-6, temperature: 1.5, seed }, [], seed)).toBe(best);
    }
  });
});

describe("keepThreshold", () => {
  // p as the sampler computes them (top = 1), unsorted on purpose.
  const probs = Float32Array.from([0.125, 1, 0.25, 0.5]);

  it("takes minP itself, and the k-th largest p for topK", () => {
    expect(keepThreshold(probs, { ...SAMPLE, minP: 0.3 })).toBeCloseTo(0.3, 12);
    expect(keepThreshold(probs, { ...SAMPLE, topK: 3 })).toBe(0.25);
    expect(keepThreshold(probs, { ...SAMPLE, topK: 3, minP: 0.3 })).toBe(0.3);
    expect(keepThreshold(probs, { ...SAMPLE, topK: 4 })).toBe(0); // k ≥ vocabulary: off
  });

  it("keeps the smallest top set whose p reach topP × the kept total", () => {
    // Total 1.875. topP 0.8: goal 1.5, reached by 1 + 0.5 exactly, so the cut is 0.5.
    expect(keepThreshold(probs, { ...SAMPLE, topP: 0.8 })).toBe(0.5);
    // topP 0.81: goal 1.51875 needs 0.25 too.
    expect(keepThreshold(probs, { ...SAMPLE, topP: 0.81 })).toBe(0.25);
    // After topK = 3 the total is 1.75; topP 0.5: goal 0.875, reached by the top alone.
    expect(keepThreshold(probs, { ...SAMPLE, topK: 3, topP: 0.5 })).toBe(1);
  });

  it("keeps every tie of the k-th value", () => {
    const tied = Float32Array.from([0.5, 1, 0.25, 0.5]);
    expect(keepThreshold(tied, { ...SAMPLE, topK: 2 })).toBe(0.5); // three tokens stay
  });
});

describe("penalties", () => {
  it("apply the formula of sampler.ts once per distinct token in the window", () => {
    // Window 4 of [0, 1, 0, 3, 0] is [1, 0, 3, 0]: counts {0: 2, 1: 1, 3: 1}; token 2 absent.
    // repeat 2, presence 0.5, frequency 0.25, by hand:
    //   t0: 2 > 0 → 2 / 2 = 1;   1 − 0.5 − 2·0.25 = 0
    //   t1: −1 ≤ 0 → −1 · 2 = −2; −2 − 0.5 − 0.25 = −2.75
    //   t3: 3 → 1.5;             1.5 − 0.5 − 0.25 = 0.75
    const l = Float32Array.from([2, -1, 0.5, 3]);
    const p = { ...SAMPLE, repeatPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25, penaltyWindow: 4 };
    expect([...penaltyCounts([0, 1, 0, 3, 0], 4).entries()].sort()).toEqual([[0, 2], [1, 1], [3, 1]]);
    applyPenalties(l, [0, 1, 0, 3, 0], p);
    expect([...l]).toEqual([0, -2.75, 0.5, 0.75]);
  });

  it("do nothing with a zero window or neutral settings, and skip ids outside the vocabulary", () => {
    const l = Float32Array.from([2, -1, 0.5]);
    applyPenalties(l, [0, 1], { ...SAMPLE, repeatPenalty: 2, penaltyWindow: 0 });
    applyPenalties(l, [0, 1], { ...SAMPLE, penaltyWindow: 10 });
    applyPenalties(l, [7, 99], { ...SAMPLE, frequencyPenalty: 1, penaltyWindow: 10 });
    expect([...l]).toEqual([2, -1, 0.5]);
  });

  it("change the greedy choice and leave the caller's logits alone", () => {
    // Token 1 leads by 0.5; three occurrences at frequency 0.25 take 0.75 off it.
    const logits = Float32Array.from([1, 1.5, 0]);
    const p = { ...GREEDY, frequencyPenalty: 0.25, penaltyWindow: 8 };
    expect(sampleToken(logits, p, [1, 1, 1], 0)).toBe(0);
    // Window 2 sees two: 1.5 − 0.5 = 1 ties token 0, and the first index wins.
    expect(sampleToken(logits, { ...p, penaltyWindow: 2 }, [1, 1, 1], 0)).toBe(0);
    // Window 1 sees one: 1.25 still leads.
    expect(sampleToken(logits, { ...p, penaltyWindow: 1 }, [1, 1, 1], 0)).toBe(1);
    expect([...logits]).toEqual([1, 1.5, 0]);
  });
});

describe("the walk", () => {
  it("maps u to tokens in index order", () => {
    // Equal logits: p = 1 each; the first i with i + 1 > 4u is floor(4u).
    const flat = new Float32Array(4);
    for (let k = 0; k < 500; k++) {
      expect(sampleToken(flat, { ...SAMPLE, seed: 5 }, [], k)).toBe(Math.floor(uniform(5, k) * 4));
    }
  });

  it("draws tokens with the exact probabilities, never an excluded one (chi-square)", () => {
    // logits ln(q): p = q / 1 (top q = 1). minP 0.1 drops q = 0.05 and 0.08; topK 4 drops
    // the smallest kept (0.15). Kept: 1, 0.6, 0.3, 0.2 → probabilities q / 2.1.
    const q = [0.3, 1, 0.05, 0.6, 0.15, 0.08, 0.2];
    const logits = Float32Array.from(q.map(Math.log));
    const p = { ...SAMPLE, minP: 0.1, topK: 4, seed: 31337 };
    const draws = 20_000;
    const counts = frequencies(logits, p, draws);
    const kept = [0, 1, 3, 6];
    for (const t of [2, 4, 5]) expect(counts[t]).toBe(0);
    const expected = kept.map((t) => (draws * q[t]!) / 2.1);
    expect(chiSquare(kept.map((t) => counts[t]!), expected)).toBeLessThan(CHI2_CRIT_1E3[3]!);
  });

  it("applies temperature before the cut (chi-square against softmax(l / T))", () => {
    const logits = Float32Array.from([0.5, 2, 1.2, -3]);
    const t = 0.7;
    const p = { ...SAMPLE, temperature: t, topP: 0.95, seed: 11 };
    // By hand in f64: weights exp((l − 2) / 0.7) ≈ [0.117, 1, 0.319, 0.00078]; total 1.4368,
    // goal 0.95 × total = 1.365 is passed at the third (1 + 0.319 + 0.117 = 1.436), so the
    // tiny token 3 is cut.
    const w = [...logits].map((l) => Math.exp((l - 2) / t));
    const keptSum = w[0]! + w[1]! + w[2]!;
    expect(w[1]! + w[2]!).toBeLessThan(0.95 * (keptSum + w[3]!));
    const draws = 20_000;
    const counts = frequencies(logits, p, draws);
    expect(counts[3]).toBe(0);
    const expected = [0, 1, 2].map((i) => (draws * w[i]!) / keptSum);
    expect(chiSquare(counts.slice(0, 3), expected)).toBeLessThan(CHI2_CRIT_1E3[2]!);
  });
});
