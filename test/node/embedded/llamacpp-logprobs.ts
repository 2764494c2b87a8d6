/**
 * llama.cpp's next-token log-probabilities at every position, for perplexity.
 *
 * The installed node-llama-cpp (3.21.1) has no raw-logits output in `controlledEvaluate`,
 * but it returns the full probability list after sampling options; with temperature 1 and
 * top-k/top-p/min-p switched off that list is exactly softmax(logits). Their logarithms are
 * valid logits (softmax of log p is p again), so {@link perplexityOfIds} can use them as is.
 */
import type { ControlledEvaluateInputItem, LlamaContext, Token } from "node-llama-cpp";
import type { LogitsBackend } from "../../../src/model/perplexity.ts";

/** Sampling options under which node-llama-cpp's probabilities are the plain softmax. */
const PLAIN_SOFTMAX = { temperature: 1, topK: 0, topP: 1, minP: 0 } as const;

/** ln p(token | prefix) over the whole vocabulary after each of `ids`, from an empty sequence. */
export async function llamaCppLogProbs(context: LlamaContext, ids: readonly number[], vocabSize: number): Promise<Float32Array[]> {
  const sequence = context.getSequence();
  try {
    const input: ControlledEvaluateInputItem[] = ids.map((t) => [
      t as Token,
      { generateNext: { probabilities: true, options: PLAIN_SOFTMAX } },
    ]);
    const results = await sequence.controlledEvaluate(input);
    return ids.map((_, i) => {
      const probs = results[i]?.next.probabilities;
      if (!probs) throw new Error(`llama.cpp returned no probabilities at position ${i}`);
      const out = new Float32Array(vocabSize).fill(-Infinity);
      for (const [token, p] of probs) out[token] = Math.log(p);
      return out;
    });
  } finally {
    sequence.dispose();
  }
}

/** llama.cpp as a {@link LogitsBackend} (each call runs from an empty sequence). */
export function llamaCppBackend(context: LlamaContext, vocabSize: number): LogitsBackend {
  return { forwardAll: (ids) => llamaCppLogProbs(context, ids, vocabSize) };
}
