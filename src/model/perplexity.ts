/**
 * Perplexity of a model on a text, defined exactly so that two backends (the CPU
 * reference, the GPU) and two runs give comparable figures:
 *
 * 1. Tokenize the whole text without BOS.
 * 2. Cut the ids into consecutive windows of N - 1 tokens (N = the context, by default
 *    min(model context, 512)); the last window may be shorter.
 * 3. Run each window as BOS + its tokens, from an empty cache.
 * 4. Score every prediction of the next token inside the window: the logits after BOS
 *    predict the window's first token, the logits after token j predict token j + 1. The
 *    logits after the window's last token predict nothing and are ignored.
 *
 * So every text token is scored exactly once, and nll is the mean of −ln p(token) in nats.
 */
import { InvalidArgumentError, TokenizerError } from "../errors.ts";
import type { Tokenizer } from "../tokenizer/index.ts";
import type { ReferenceModel } from "./reference.ts";

/** Anything that returns the logits after every token of a sequence, run from an empty cache. */
export interface LogitsBackend {
  /** Logits (vocabulary-sized) after each of `ids`, in order. */
  forwardAll(ids: readonly number[]): Promise<Float32Array[]>;
}

/** The result of a perplexity run. */
export interface PerplexityResult {
  /** Number of text tokens scored. */
  readonly tokens: number;
  /** Mean negative log-likelihood per token, in nats. */
  readonly nll: number;
  /** exp(nll). */
  readonly perplexity: number;
}

/** Options of {@link perplexityOfIds}. */
export interface PerplexityOptions {
  /** The BOS token id put before every window. */
  readonly bos: number;
  /** N: tokens per forward pass, BOS included (so each window scores N − 1 text tokens). */
  readonly context: number;
  /** Called after each window with the number of windows done and the total. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** The default context N of a perplexity run: min(model context, 512). */
export function defaultPerplexityContext(modelContextLength: number): number {
  return Math.min(modelContextLength, 512);
}

/** Perplexity of the text `ids` (tokenized without BOS), as defined at the top of this file. */
export async function perplexityOfIds(
  ids: readonly number[],
  backend: LogitsBackend,
  options: PerplexityOptions,
): Promise<PerplexityResult> {
  const windowTokens = options.context - 1;
  if (!Number.isInteger(options.context) || windowTokens < 1) {
    throw new InvalidArgumentError("context", `must be an integer of at least 2, got ${options.context}`);
  }
  if (ids.length === 0) throw new InvalidArgumentError("text", "has no tokens to score");
  const nWindows = Math.ceil(ids.length / windowTokens);
  let totalNll = 0;
  for (let w = 0; w < nWindows; w++) {
    const window = ids.slice(w * windowTokens, (w + 1) * windowTokens);
    const logits = await backend.forwardAll([options.bos, ...window]);
    if (logits.length < window.length) {
      throw new InvalidArgumentError("backend", `returned ${logits.length} logit rows for ${window.length + 1} tokens`);
    }
    // logits[j] comes after input j (BOS at 0), so it predicts window[j].
    window.forEach((target, j) => {
      totalNll += negativeLogLikelihood(logits[j]!, target);
    });
    options.onProgress?.(w + 1, nWindows);
  }
  const nll = totalNll / ids.length;
  return { tokens: ids.length, nll, perplexity: Math.exp(nll) };
}

/** Options of {@link perplexityOfText}. */
export interface TextPerplexityOptions {
  /** The model's context length; N defaults to min(it, 512) and may not exceed it. */
  readonly modelContextLength: number;
  /** N, tokens per forward pass including BOS. */
  readonly context?: number;
  /** Called after each window with the number of windows done and the total. */
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * Perplexity of `text`: tokenized without BOS and with special-token text kept as plain
 * text (a corpus is not a chat), then scored by {@link perplexityOfIds}.
 */
export function perplexityOfText(
  text: string,
  tokenizer: Pick<Tokenizer, "encode" | "bos">,
  backend: LogitsBackend,
  options: TextPerplexityOptions,
): Promise<PerplexityResult> {
  const context = options.context ?? defaultPerplexityContext(options.modelContextLength);
  if (context > options.modelContextLength) {
    throw new InvalidArgumentError("context", `${context} exceeds the model's context length ${options.modelContextLength}`);
  }
  if (tokenizer.bos === undefined) {
    throw new TokenizerError("NO_BOS", "the model's tokenizer has no BOS token to start each perplexity window");
  }
  const ids = tokenizer.encode(text, { addSpecial: false, parseSpecial: false });
  return perplexityOfIds(ids, backend, { bos: tokenizer.bos, context, onProgress: options.onProgress });
}

/** −ln softmax(logits)[target], computed stably in f64. */
export function negativeLogLikelihood(logits: Float32Array, target: number): number {
  if (target < 0 || target >= logits.length) {
    throw new InvalidArgumentError("target", `token ${target} is outside the ${logits.length} logits`);
  }
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return max + Math.log(sum) - logits[target]!;
}

/** The CPU reference as a {@link LogitsBackend}: each call runs from a fresh cache. */
export function referenceLogitsBackend(model: ReferenceModel): LogitsBackend {
  return {
    forwardAll: (ids) => Promise.resolve(model.forward(ids, model.createCache(), { allLogits: true })),
  };
}
