/**
 * Deterministic inputs and the measures of agreement shared by the GPU check page (in
 * Chromium) and its Playwright spec (in Node): the same formulas as the Deno GPU suites
 * (test/deno/gpu-matmul.test.ts, gpu-ops.test.ts, gpu-model.test.ts), in f64.
 * Imports only types, so both sides load it as is.
 */
import type { GpuContext } from "../../../src/gpu/device.ts";
import type { Comparison } from "./api.ts";

/** Deterministic uniform numbers in [-1, 1) (mulberry32): the same seed gives the same stream. */
export function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

/** `n` values uniform in [offset − scale, offset + scale). */
export function randomArray(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const next = random(seed);
  return Float32Array.from({ length: n }, () => offset + next() * scale);
}

/**
 * Worst |got − want| / (scale[i] + 1e-6) over all elements, and the first element above
 * `tolerance` (as text) if any. `scale` is a per-element size (Σ|w·x| of a dot product) or
 * one number for all; NaN in `got` counts as a failure.
 */
export function worstError(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  scale: ArrayLike<number> | number,
  tolerance: number,
): { worst: number; failure?: string } {
  if (got.length !== want.length) return { worst: Infinity, failure: `length ${got.length}, expected ${want.length}` };
  let worst = 0;
  let failure: string | undefined;
  for (let i = 0; i < got.length; i++) {
    const s = typeof scale === "number" ? scale : scale[i]!;
    const err = Math.abs(got[i]! - want[i]!) / (s + 1e-6);
    if (!(err <= tolerance) && failure === undefined) {
      failure = `element ${i} is ${got[i]}, expected ${want[i]} (error ${err.toExponential(2)} of ${s.toExponential(2)})`;
    }
    worst = Number.isNaN(err) ? Infinity : Math.max(worst, err);
  }
  return failure === undefined ? { worst } : { worst, failure };
}

/** Adds a failure when buffers the check made outlive it (each check destroys its own). */
export function leftBuffers(ctx: GpuContext, comparisons: Comparison[], what: string): void {
  const live = ctx.allocator.liveBuffers;
  if (live !== 0) comparisons.push({ name: `${what}: buffers left`, worst: live, tolerance: 0, failure: `${live} buffers still live` });
}

/** How closely one set of logits rows follows another. */
export interface Agreement {
  /** Largest |got − want| over every logit of every row. */
  readonly maxDiff: number;
  /** Mean over rows of KL(softmax(want) ‖ softmax(got)), in nats. */
  readonly meanKl: number;
  /** Share of rows whose largest logit is at the same index. */
  readonly top1: number;
}

function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const logZ = max + Math.log(sum);
  return Float64Array.from({ length: logits.length }, (_, i) => logits[i]! - logZ);
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Compares `got` (one logits row per position) with `want`, the reference. */
export function compareLogits(got: readonly ArrayLike<number>[], want: readonly ArrayLike<number>[]): Agreement {
  if (got.length !== want.length) throw new Error(`${got.length} rows of logits, expected ${want.length}`);
  let maxDiff = 0;
  let kl = 0;
  let same = 0;
  got.forEach((g, row) => {
    const w = want[row]!;
    if (g.length !== w.length) throw new Error(`row ${row}: ${g.length} logits, expected ${w.length}`);
    for (let j = 0; j < g.length; j++) maxDiff = Math.max(maxDiff, Math.abs(g[j]! - w[j]!));
    const lp = logSoftmax(w);
    const lq = logSoftmax(g);
    for (let j = 0; j < lp.length; j++) kl += Math.exp(lp[j]!) * (lp[j]! - lq[j]!);
    if (argmax(g) === argmax(w)) same++;
  });
  // Any NaN logit makes maxDiff NaN; report it as infinitely far.
  return { maxDiff: Number.isNaN(maxDiff) ? Infinity : maxDiff, meanKl: kl / got.length, top1: same / got.length };
}
