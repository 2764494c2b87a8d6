import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../../src/errors.ts";
import { type LogitsBackend, negativeLogLikelihood, perplexityOfIds } from "../../../src/model/perplexity.ts";

/**
 * A toy bigram "model" over 4 tokens (3 is BOS): the next-token distribution depends only
 * on the last input token, and the logits are ln(p) + an offset (softmax ignores offsets),
 * so every probability below is exact and the expected perplexity is computed by hand.
 */
const BOS = 3;
const NEXT: Record<number, number[]> = {
  3: [0.5, 0.25, 0.125, 0.125],
  0: [0.25, 0.25, 0.25, 0.25],
  1: [0.1, 0.2, 0.6, 0.1],
  2: [0.7, 0.1, 0.1, 0.1],
};

function toyBackend(calls: number[][]): LogitsBackend {
  return {
    forwardAll(ids) {
      calls.push([...ids]);
      return Promise.resolve(
        ids.map((id, i) =>
          // The logits after the window's last token must not be used: make them poison.
          i === ids.length - 1 ? new Float32Array(4).fill(Number.NaN) : Float32Array.from(NEXT[id]!, (p) => Math.log(p) + 7 * i),
        ),
      );
    },
  };
}

describe("perplexity definition", () => {
  it("scores each text token once, windows of N-1 tokens each after BOS", async () => {
    const calls: number[][] = [];
    const result = await perplexityOfIds([1, 2, 0, 1, 2], toyBackend(calls), { bos: BOS, context: 3 });
    // Windows of N-1 = 2 tokens: [1,2], [0,1], [2] (the last one shorter), each after BOS.
    expect(calls).toEqual([
      [3, 1, 2],
      [3, 0, 1],
      [3, 2],
    ]);
    // Scored: p(1|BOS)=0.25, p(2|1)=0.6, p(0|BOS)=0.5, p(1|0)=0.25, p(2|BOS)=0.125.
    // Product = 0.00234375 = 3/1280, so nll = ln(1280/3)/5 and perplexity = (1280/3)^(1/5).
    expect(result.tokens).toBe(5);
    expect(result.nll).toBeCloseTo(Math.log(1280 / 3) / 5, 6);
    expect(result.perplexity).toBeCloseTo(Math.pow(1280 / 3, 1 / 5), 5);
  });

  it("one window when the text fits in N-1 tokens", async () => {
    const calls: number[][] = [];
    const result = await perplexityOfIds([2, 0], toyBackend(calls), { bos: BOS, context: 512 });
    expect(calls).toEqual([[3, 2, 0]]);
    // p(2|BOS)=0.125, p(0|2)=0.7.
    expect(result.nll).toBeCloseTo(-(Math.log(0.125) + Math.log(0.7)) / 2, 6);
  });

  it("negativeLogLikelihood is stable for large logits", () => {
    // ln(e^1000 + e^1000) - 1000 = ln 2.
    expect(negativeLogLikelihood(Float32Array.from([1000, 1000]), 0)).toBeCloseTo(Math.log(2), 9);
  });

  it("refuses empty text and contexts below 2", async () => {
    await expect(perplexityOfIds([], toyBackend([]), { bos: BOS, context: 8 })).rejects.toThrow(InvalidArgumentError);
    await expect(perplexityOfIds([1], toyBackend([]), { bos: BOS, context: 1 })).rejects.toThrow(InvalidArgumentError);
  });
});
