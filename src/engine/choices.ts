/**
 * A request for `n` > 1 choices: n sequences of the engine (one {@link Request} each)
 * behind one stream. Chunks of all choices interleave in the stream, each tagged with its
 * `index`; the result lists every choice. A failure of any choice (abort, disposal, device
 * loss) fails the whole request: a partial set of choices is not an answer.
 */
import { Channel } from "./channel.ts";
import { choiceSeed, randomSeed } from "./options.ts";
import { Request, type RequestInput } from "./request.ts";
import type { GenerateOptions, GenerationChunk, GenerationResult, GenerationStream } from "./types.ts";

export class ChoiceGroup implements GenerationStream {
  readonly result: Promise<GenerationResult>;
  /** The choices, index order; choice 0 prefills the prompt, the others fork its pages. */
  readonly choices: readonly Request[];
  readonly #channel = new Channel<GenerationChunk>();

  constructor(input: RequestInput, options: GenerateOptions, n: number) {
    // One seed for the request, resolved now, so that every choice derives from the same one.
    const seed = options.seed ?? randomSeed();
    const channel = this.#channel;
    const first = new Request(input, { ...options, seed: choiceSeed(seed, 0) }, { index: 0, channel });
    const others = Array.from(
      { length: n - 1 },
      (_, i) => new Request(input, { ...options, seed: choiceSeed(seed, i + 1) }, { index: i + 1, channel, parent: first }),
    );
    this.choices = [first, ...others];
    this.result = Promise.all(this.choices.map((c) => c.result)).then(
      (results) => {
        channel.close();
        return combine(results);
      },
      (error) => {
        for (const c of this.choices) c.fail(error);
        channel.fail(error);
        throw error;
      },
    );
    this.result.catch(() => {});
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerationChunk> {
    return this.#channel[Symbol.asyncIterator]();
  }

  /** Fails every choice (an invalid request, a disposed engine) before any is queued. */
  fail(error: unknown): void {
    for (const c of this.choices) c.fail(error);
  }
}

/** Choice 0's result, with every choice listed and the usage of all of them. */
function combine(results: readonly GenerationResult[]): GenerationResult {
  const first = results[0]!;
  const completionTokens = results.reduce((n, r) => n + r.usage.completionTokens, 0);
  return {
    ...first,
    usage: {
      ...first.usage,
      completionTokens,
      totalTokens: first.usage.promptTokens + completionTokens,
    },
    choices: results.map((r) => r.choices[0]!),
  };
}
