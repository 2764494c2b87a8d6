/**
 * Measures of how far two sets of logits are apart, for the llama.cpp cross-checks. All
 * in f64, with log-softmax computed stably.
 */
import { SeededRandom } from "../../../src/model/synthetic.ts";

// The llama.cpp side lives in the shared support module; re-exported under the names used here.
export { createExactContext as createComparisonContext, llamaCppLogits as llamaCppLogitsByToken } from "../support/llamacpp.ts";

/** ln softmax(logits), in f64. */
export function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const logZ = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v - logZ);
}

/** KL(p || q) in nats, where p and q are the softmax of the two logit vectors. */
export function klDivergence(pLogits: Float32Array, qLogits: Float32Array): number {
  const lp = logSoftmax(pLogits);
  const lq = logSoftmax(qLogits);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
  return kl;
}

/** Largest |a[i] - b[i]|. */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Index of the largest value. */
/** Cosine similarity of two vectors (embeddings), in f64. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

export function top1(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** Probability of the most likely token. */
export function top1Probability(logits: Float32Array): number {
  return Math.exp(logSoftmax(logits)[top1(logits)]!);
}

/** `n` token ids drawn uniformly from [0, vocabSize), reproducibly. */
export function randomTokens(n: number, vocabSize: number, seed: number): number[] {
  const rng = new SeededRandom(seed, "prompt");
  return Array.from({ length: n }, () => Math.floor(rng.uniform() * vocabSize));
}
