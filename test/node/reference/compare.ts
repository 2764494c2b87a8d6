/**
 * Measures of how far two sets of logits are apart, for the llama.cpp cross-checks. All
 * in f64, with log-softmax computed stably.
 */
import type { ControlledEvaluateInputItem, LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { SeededRandom } from "../../../src/model/synthetic.ts";

/**
 * A llama.cpp context for exact comparisons: F32 KV cache, and flash attention off (its CPU
 * kernel rounds through F16, which moves logits by about 1e-2 even with an F32 cache;
 * measured here: 4e-3..1e-2 with it, 4e-6..7e-6 without). One thread: on this shared
 * 2-core machine ggml's spinning worker threads made a 9-token evaluation take 1.7 s
 * instead of 9 ms.
 */
export function createComparisonContext(model: LlamaModel, contextSize: number): Promise<LlamaContext> {
  return model.createContext({
    contextSize,
    sequences: 4,
    batchSize: contextSize,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
}

/** Sampling options under which node-llama-cpp reports the logits unchanged (no temperature, no filters). */
const RAW_LOGITS = { temperature: 1, topK: 0, topP: 1, minP: 0 } as const;

/**
 * llama.cpp's full-vocabulary logits after each of `ids` (teacher forcing), from an empty
 * sequence, indexed by token id. node-llama-cpp returns them as a Map sorted by value, so
 * they are put back in token order here.
 */
export async function llamaCppLogitsByToken(context: LlamaContext, ids: readonly number[], vocabSize: number): Promise<Float32Array[]> {
  const sequence = context.getSequence();
  try {
    const input: ControlledEvaluateInputItem[] = ids.map((t) => [t as Token, { generateNext: { logits: true, options: RAW_LOGITS } }]);
    const results = await sequence.controlledEvaluate(input);
    return ids.map((_, i) => {
      const logits = results[i]?.next.logits;
      if (!logits) throw new Error(`llama.cpp returned no logits at position ${i}`);
      if (logits.size !== vocabSize) throw new Error(`llama.cpp returned ${logits.size} logits at position ${i}, expected ${vocabSize}`);
      const out = new Float32Array(vocabSize).fill(Number.NaN);
      for (const [token, value] of logits) out[token] = value;
      return out;
    });
  } finally {
    sequence.dispose();
  }
}

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
