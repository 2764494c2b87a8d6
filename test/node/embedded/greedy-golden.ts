/**
 * The embedded model's golden greedy continuations, as llama.cpp computes them: for each
 * variant and prompt, the ids llama.cpp picks by argmax (BOS first, stopping at end of
 * text). `test/fixtures/embedded-greedy.json` holds them, so that suites without llama.cpp
 * (Deno on WebGPU, the browser) can check our engine against them. test/node/embedded
 * checks the file against llama.cpp on every run; `UPDATE_GOLDEN=1 npx vitest run
 * test/node/embedded` rewrites it (after a retraining of the model).
 */
import type { LlamaContext, LlamaModel } from "node-llama-cpp";
import { llamaCppLogProbs } from "./llamacpp-logprobs.ts";

/** Where the golden file lives, from the repository root. */
export const GOLDEN_FILE = "test/fixtures/embedded-greedy.json";

export const GOLDEN_VARIANTS = ["f32", "f16", "q8_0", "q4_k_m"] as const;
export type GoldenVariant = (typeof GOLDEN_VARIANTS)[number];

/** Prompts of the golden file: the README's, and two of other kinds. */
export const GOLDEN_PROMPTS = ["The meaning of life is", "Once upon a time", "A wise man said:"] as const;

/** Tokens generated per prompt. */
export const GOLDEN_TOKENS = 24;

/** One golden continuation. */
export interface GoldenCase {
  readonly variant: GoldenVariant;
  readonly prompt: string;
  /** The prompt's ids as llama.cpp tokenizes them, BOS first. */
  readonly promptIds: readonly number[];
  /** llama.cpp's greedy ids after the prompt (end of text excluded). */
  readonly ids: readonly number[];
  /**
   * At each step, llama.cpp's log-probability gap between its pick and the runner-up. Where
   * it is tiny, arithmetic that differs legitimately (llama.cpp's CPU kernels round the
   * activations to 8 bits before quantized products; we keep them in f32) may pick the other.
   */
  readonly margins: readonly number[];
}

/**
 * A gap below this is a near-tie, where ids may differ without either side being wrong.
 * Float weights: our logits match llama.cpp's to about 1e-4, so only true ties. Quantized
 * weights: llama.cpp rounds the activations to 8 bits before the product, which moves
 * logits by up to about 1e-2 on this model.
 */
export function nearTie(variant: GoldenVariant): number {
  return variant === "f32" || variant === "f16" ? 1e-3 : 2e-2;
}

/** How many leading ids must match: those before the first near-tie. */
export function decisivePrefix(c: GoldenCase): number {
  const first = c.margins.findIndex((m) => m < nearTie(c.variant));
  return first === -1 ? c.ids.length : first;
}

/** llama.cpp's greedy ids after `prompt` (BOS first), stopping at end of text. */
export async function llamaCppGreedy(
  model: LlamaModel,
  context: LlamaContext,
  prompt: string,
  n: number,
  vocab: number,
): Promise<{ promptIds: number[]; ids: number[]; margins: number[] }> {
  const promptIds: number[] = [model.tokens.bos!, ...model.tokenize(prompt).map(Number)];
  const ids = [...promptIds];
  const out: number[] = [];
  const margins: number[] = [];
  for (let i = 0; i < n; i++) {
    const logProbs = (await llamaCppLogProbs(context, ids, vocab)).at(-1)!;
    let best = 0;
    for (let j = 1; j < logProbs.length; j++) if (logProbs[j]! > logProbs[best]!) best = j;
    let second = -Infinity;
    for (let j = 0; j < logProbs.length; j++) if (j !== best) second = Math.max(second, logProbs[j]!);
    if (best === model.tokens.eos) break;
    ids.push(best);
    out.push(best);
    margins.push(Number((logProbs[best]! - second).toFixed(4)));
  }
  return { promptIds, ids: out, margins };
}
