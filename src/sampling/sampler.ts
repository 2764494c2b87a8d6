/**
 * The sampler, defined once in plain TypeScript. The WebGPU sampler (shaders/sample.wgsl)
 * implements the same steps in the same order, so both draw the same token from the same
 * logits, seed and counter (up to float rounding at a boundary).
 *
 * Steps, for one row of logits:
 * 1. Penalties over the window (the last `penaltyWindow` tokens fed, prompt included),
 *    once per distinct token t with count c in the window:
 *    repetition (llama.cpp): l[t] = l[t] > 0 ? l[t] / r : l[t] * r;
 *    then presence and frequency (OpenAI): l[t] -= presence + c * frequency.
 * 2. temperature 0: the first index of the largest logit (greedy). Otherwise:
 * 3. l /= temperature; p[i] = exp(l[i] - max l) (so the top token has p = 1, unnormalized).
 * 4. A threshold t on p: the k-th largest p (topK), minP itself (minP × top p, top p = 1),
 *    and for topP the largest v such that the kept p ≥ v sum to at least topP × the kept
 *    total; a token is kept when p ≥ t.
 * 5. u = uniform(seed, sampleIndex) in [0, 1); walk the kept tokens in index order and
 *    return the first at which the running sum of p exceeds u × (sum of kept p).
 */
/** How one request samples; every field is honoured by every runner. */
export interface SamplingParams {
  /** 0 means greedy (argmax); otherwise logits are divided by it. */
  readonly temperature: number;
  /** Keep only the k most likely tokens; 0 = off. */
  readonly topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 = off. */
  readonly topP: number;
  /** Drop tokens whose probability is below minP × the top probability; 0 = off. */
  readonly minP: number;
  /** llama.cpp-style repetition penalty on tokens in the window (>1 discourages); 1 = off. */
  readonly repeatPenalty: number;
  /** How many of the most recent tokens (prompt and generated) the penalties look at. */
  readonly penaltyWindow: number;
  /** OpenAI-style: subtracted once from the logit of every token present in the window. */
  readonly presencePenalty: number;
  /** OpenAI-style: subtracted per occurrence in the window. */
  readonly frequencyPenalty: number;
  /** Seed of the counter-based random generator (a u32). */
  readonly seed: number;
}


/** Most alternatives reported per sampled token (OpenAI's `top_logprobs` cap). */
export const MAX_TOP_LOGPROBS = 20;

/**
 * Log-probabilities of one sampled token. They are a log-softmax of the model's **raw**
 * logits — before penalties, temperature and the top-k/top-p/min-p filters — which is what
 * OpenAI's `logprobs` and llama.cpp's `n_probs` (without `post_sampling_probs`) report:
 * the model's own distribution, whatever the request's sampler then did with it.
 */
export interface SampledLogprobs {
  /** The sampled token. */
  readonly id: number;
  /** ln p(id). */
  readonly logprob: number;
  /** The most likely ids, most likely first (equal logits: lower id first). */
  readonly topIds: readonly number[];
  /** ln p of each of `topIds`. */
  readonly topLogprobs: readonly number[];
}

/** Greedy settings: every option off. */
export const GREEDY: SamplingParams = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repeatPenalty: 1,
  penaltyWindow: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: 0,
};

/** murmur3's 32-bit finalizer: a bijection that mixes every input bit into every output bit. */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x85ebca6b) >>> 0;
  x = (x ^ (x >>> 13)) >>> 0;
  x = Math.imul(x, 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * A uniform number in [0, 1) that depends only on (seed, counter): the k-th draw of a
 * request is the same whatever ran before it. 24 bits, so it is exact in f32 too.
 */
export function uniform(seed: number, counter: number): number {
  const a = mix32((seed ^ 0x9e3779b9) >>> 0);
  const b = mix32((a + Math.imul(counter >>> 0, 0x9e3779b9) + 0x7f4a7c15) >>> 0);
  return (b >>> 8) / 16777216;
}

/** Counts of each distinct token among the last `window` entries of `history`. */
export function penaltyCounts(history: readonly number[], window: number): Map<number, number> {
  const counts = new Map<number, number>();
  for (let i = Math.max(0, history.length - window); i < history.length; i++) {
    const t = history[i]!;
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  return counts;
}

/** Step 1: applies the penalties to `logits` in place. */
export function applyPenalties(logits: Float32Array, history: readonly number[], p: SamplingParams): void {
  const active = p.repeatPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
  if (!active || p.penaltyWindow <= 0) return;
  for (const [t, c] of penaltyCounts(history, p.penaltyWindow)) {
    if (t < 0 || t >= logits.length) continue;
    let l = logits[t]!;
    if (p.repeatPenalty !== 1) l = l > 0 ? l / p.repeatPenalty : l * p.repeatPenalty;
    logits[t] = l - p.presencePenalty - c * p.frequencyPenalty;
  }
}

/** The first index of the largest value. */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Step 4: the smallest probability (relative to the top one) a token may have to be kept. */
export function keepThreshold(probs: Float32Array, p: SamplingParams): number {
  let threshold = p.minP > 0 ? p.minP : 0;
  const needsSort = (p.topK > 0 && p.topK < probs.length) || p.topP < 1;
  if (!needsSort) return threshold;
  const sorted = Float32Array.from(probs).sort().reverse();
  if (p.topK > 0 && p.topK < sorted.length) threshold = Math.max(threshold, sorted[p.topK - 1]!);
  if (p.topP < 1) {
    let total = 0;
    for (const v of sorted) if (v >= threshold) total += v;
    let running = 0;
    for (const v of sorted) {
      if (v < threshold) break;
      running += v;
      if (running >= p.topP * total) {
        threshold = Math.max(threshold, v);
        break;
      }
    }
  }
  return threshold;
}

/**
 * Samples one token from `logits` (left untouched) after the tokens in `history`.
 * @param sampleIndex which token of the request this is: the generator's counter.
 */
export function sampleToken(
  logits: Float32Array,
  p: SamplingParams,
  history: readonly number[],
  sampleIndex: number,
): number {
  const l = Float32Array.from(logits);
  applyPenalties(l, history, p);
  if (p.temperature <= 0) return argmax(l);

  let max = -Infinity;
  for (let i = 0; i < l.length; i++) {
    l[i] = l[i]! / p.temperature;
    if (l[i]! > max) max = l[i]!;
  }
  const probs = new Float32Array(l.length);
  for (let i = 0; i < l.length; i++) probs[i] = Math.exp(l[i]! - max);

  const threshold = keepThreshold(probs, p);
  let total = 0;
  for (const v of probs) if (v >= threshold) total += v;
  const target = uniform(p.seed, sampleIndex) * total;
  let running = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i]! < threshold) continue;
    running += probs[i]!;
    last = i;
    if (running > target) return i;
  }
  return last; // only reached through rounding at the very end of the walk
}

/** What {@link logprobsOf} returns: ln p of one token and of the `topN` most likely. */
export interface LogprobsOfRow {
  readonly logprob: number;
  /** Most likely first; equal logits: lower id first. */
  readonly topIds: number[];
  readonly topLogprobs: number[];
}

/**
 * The log-softmax of one row of raw logits (before penalties and temperature, as OpenAI
 * and llama.cpp's `n_probs` report it), at `id` and at the `topN` most likely tokens.
 * The reference the WebGPU kernel (shaders/logprobs.wgsl) is checked against: max and
 * log-sum-exp in f64, then ln p(t) = l[t] − (max + ln Σ exp(l − max)).
 */
export function logprobsOf(logits: Float32Array, id: number, topN: number): LogprobsOfRow {
  let max = -Infinity;
  for (const l of logits) if (l > max) max = l;
  let sum = 0;
  for (const l of logits) sum += Math.exp(l - max);
  const logSumExp = max + Math.log(sum);
  const topIds = topIndices(logits, topN);
  return {
    logprob: logits[id]! - logSumExp,
    topIds,
    topLogprobs: topIds.map((t) => logits[t]! - logSumExp),
  };
}

/** The `n` indices of the largest values, largest first (ties: lower index first); O(length · n). */
function topIndices(values: Float32Array, n: number): number[] {
  const top: number[] = [];
  if (n <= 0) return top;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (top.length === n && !(v > values[top[n - 1]!]!)) continue;
    let j = Math.min(top.length, n - 1);
    if (top.length < n) top.push(i);
    // Shift smaller values down; an equal value found earlier keeps its place (lower index first).
    while (j > 0 && values[top[j - 1]!]! < v) {
      top[j] = top[j - 1]!;
      j--;
    }
    top[j] = i;
  }
  return top;
}
