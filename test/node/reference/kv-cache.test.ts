/**
 * The KV cache: a prompt followed by tokens fed one at a time (or in uneven chunks) must
 * give exactly the logits of one long prompt, since each position does the same
 * arithmetic either way. And the cache refuses to grow past the context length.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../../src/errors.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { ReferenceModel } from "../../../src/model/reference.ts";
import { SYNTHETIC_ARCHS } from "../../../src/model/synthetic.ts";
import { syntheticModelPath } from "../support/fixtures.ts";
import { randomTokens } from "./compare.ts";

describe.each(SYNTHETIC_ARCHS)("%s KV cache", (arch) => {
  let model: ReferenceModel;
  beforeAll(async () => {
    const file = await openGGUF(await syntheticModelPath(arch, "Q8_0"));
    try {
      model = await ReferenceModel.load(file);
    } finally {
      await file.close();
    }
  });

  it("prompt then one token at a time equals one long prompt", () => {
    const ids = randomTokens(40, model.config.vocabSize, 3);
    const whole = model.forward(ids, model.createCache(), { allLogits: true });

    const cache = model.createCache();
    const stepwise = model.forward(ids.slice(0, 24), cache, { allLogits: true });
    for (const id of ids.slice(24)) stepwise.push(...model.forward([id], cache));
    expect(cache.length).toBe(ids.length);
    expect(stepwise).toEqual(whole);

    // Uneven chunks, and only the last logits of each.
    const chunked = model.createCache();
    const lastOfChunks = [ids.slice(0, 5), ids.slice(5, 6), ids.slice(6, 33), ids.slice(33)].map(
      (chunk) => model.forward(chunk, chunked)[0],
    );
    expect(lastOfChunks).toEqual([whole[4], whole[5], whole[32], whole[39]]);
  });

  it("refuses positions past the cache's length, which is at most the context length", () => {
    const cache = model.createCache(8);
    model.forward(randomTokens(8, model.config.vocabSize, 5), cache);
    expect(() => model.forward([1], cache)).toThrow(InvalidArgumentError);
    expect(cache.length).toBe(8);
    expect(model.createCache().maxLength).toBe(model.config.contextLength);
    expect(() => model.createCache(model.config.contextLength + 1)).toThrow(InvalidArgumentError);
  });

  it("refuses token ids outside the vocabulary", () => {
    expect(() => model.forward([model.config.vocabSize], model.createCache())).toThrow(InvalidArgumentError);
  });
});
