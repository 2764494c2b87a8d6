/**
 * The KV cache: a prompt followed by tokens fed one at a time (or in uneven chunks) must
 * give exactly the logits of one long prompt, since each position does the same
 * arithmetic either way. And the cache refuses to grow past the context length.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../../src/errors.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { ReferenceKvPool, ReferenceModel } from "../../../src/model/reference.ts";
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

  it("a paged pool through scrambled page tables equals the contiguous cache; a shared prefix page copied then continued equals a fresh run", () => {
    const c = model.config;
    const pool = new ReferenceKvPool(c.nLayers, c.nKvHeads * c.headDim, 16, 12);
    const a = randomTokens(40, c.vocabSize, 7);
    const b = [...a.slice(0, 20), ...randomTokens(20, c.vocabSize, 8)];
    const wantA = model.forward(a, model.createCache(), { allLogits: true });
    const wantB = model.forward(b, model.createCache(), { allLogits: true });

    // Pages in reverse order, fed in uneven chunks.
    const pagesA = [11, 7, 9];
    const gotA = model.forward(a.slice(0, 13), pool.view(pagesA, 0), { allLogits: true });
    gotA.push(...model.forward(a.slice(13), pool.view(pagesA, 13), { allLogits: true }));
    expect(gotA).toEqual(wantA);

    // b shares a's first page (positions 0..15) and the partial second one (16..19), copied.
    pool.copyPage(7, 2);
    const pagesB = [11, 2, 0];
    const gotB = model.forward(b.slice(20), pool.view(pagesB, 20), { allLogits: true });
    expect(gotB).toEqual(wantB.slice(20));
    // a's pages are untouched by b.
    expect(model.forward(a.slice(39), pool.view(pagesA, 39))[0]).toEqual(wantA[39]);
    // Past its page table a view refuses, like the cache past its context.
    expect(() => model.forward(a, pool.view([0, 1], 0))).toThrow(/past the 2 pages/);
  });

  it("refuses token ids outside the vocabulary", () => {
    expect(() => model.forward([model.config.vocabSize], model.createCache())).toThrow(InvalidArgumentError);
  });
});
