/**
 * The KV page allocator and prefix cache (src/engine/kv-pages.ts). Expected values follow
 * from the definitions (page i holds positions [i·size, (i+1)·size); a match leaves the
 * prompt's last token out; LRU evicts the page released longest ago, leaves first), and a
 * random property test checks the invariants against a plain model of who holds what.
 */
import { describe, expect, it } from "vitest";
import { KvPages, type PageTable } from "../../../src/engine/kv-pages.ts";
import { seededRandom } from "../quant/random.ts";

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

/** A sequence that ran `tokens` to the end and finished: its full pages stay cached. */
function runAndFinish(kv: KvPages, tokens: readonly number[]): PageTable {
  const { table } = kv.match(tokens);
  expect(kv.ensure(table, tokens.length)).toBe(true);
  kv.commit(table, tokens, tokens.length);
  kv.release(table);
  return table;
}

describe("KvPages", () => {
  it("allocates whole pages for positions and frees them on release", () => {
    const kv = new KvPages(8, 4);
    const { table, cachedTokens } = kv.match(range(100, 10));
    expect(cachedTokens).toBe(0);
    expect(kv.ensure(table, 10)).toBe(true);
    expect(table.pages).toEqual([0, 1, 2]);
    expect(kv.available).toBe(5);
    expect(kv.ensure(table, 12)).toBe(true); // still 3 pages
    expect(table.pages.length).toBe(3);
    kv.release(table);
    expect(kv.available).toBe(8);
    expect(kv.cachedPages).toBe(0); // nothing committed: nothing cached
  });

  it("ensure is all or nothing", () => {
    const kv = new KvPages(4, 4);
    const a = kv.match([1]).table;
    expect(kv.ensure(a, 12)).toBe(true);
    const b = kv.match([2]).table;
    expect(kv.ensure(b, 8)).toBe(false);
    expect(b.pages).toEqual([]);
    expect(kv.available).toBe(1);
    expect(kv.ensure(b, 4)).toBe(true);
    expect(kv.available).toBe(0);
  });

  it("matches the longest cached chain of full pages, leaving the last prompt token to compute", () => {
    const kv = new KvPages(16, 4);
    const history = range(10, 12); // three full pages
    const first = runAndFinish(kv, history);
    expect(kv.cachedPages).toBe(3);
    expect(kv.available).toBe(16); // cached but evictable

    // The same 12 tokens as a prompt: the last one must be fed, so only 2 pages are reused.
    const same = kv.match(history);
    expect(same.cachedTokens).toBe(8);
    expect(same.table.pages).toEqual([0, 1]);
    kv.release(same.table);

    // A longer prompt that extends it reuses all three.
    const longer = kv.match([...history, 7, 8]);
    expect(longer.cachedTokens).toBe(12);
    expect(longer.table.pages).toEqual([0, 1, 2]);
    expect(kv.refCount(0)).toBe(1);
    expect(kv.available).toBe(13);
    kv.release(longer.table);
    expect(first.released).toBe(true);
  });

  it("a prompt that differs inside a page reuses only the pages before it", () => {
    const kv = new KvPages(16, 4);
    runAndFinish(kv, range(0, 12));
    const prompt = [...range(0, 6), 99, ...range(7, 8)];
    const m = kv.match(prompt);
    expect(m.cachedTokens).toBe(4);
    // Same tokens in page 1 under a different page 0: not a match (the chain names the whole prefix).
    const otherRoot = kv.match([42, ...range(1, 11)]);
    expect(otherRoot.cachedTokens).toBe(0);
  });

  it("evicts the least recently used cached page, leaves before their roots", () => {
    const kv = new KvPages(4, 2);
    runAndFinish(kv, [1, 2, 3, 4]); // pages 0, 1 cached
    runAndFinish(kv, [5, 6, 7, 8]); // pages 2, 3 cached
    expect(kv.cachedPages).toBe(4);
    // Reusing [1,2,3,4] makes it the most recent.
    kv.release(kv.match([1, 2, 3, 4, 9]).table);
    // One page needed: the deepest page of the older prefix [5,6,7,8] goes first.
    const t = kv.match([50]).table;
    expect(kv.ensure(t, 2)).toBe(true);
    expect(t.pages).toEqual([3]);
    expect(kv.match([5, 6, 7, 8, 0]).cachedTokens).toBe(2);
    expect(kv.match([1, 2, 3, 4, 0]).cachedTokens).toBe(4);
  });

  it("a page evicted and reused for other tokens is never matched under its old prefix", () => {
    const kv = new KvPages(2, 2);
    runAndFinish(kv, [1, 2, 3, 4]); // pages 0 ([1,2]) and 1 ([3,4]) cached
    // Both pages are taken for another prefix, the leaf first (it is the older in eviction order).
    const t = kv.match([9]).table;
    expect(kv.ensure(t, 4)).toBe(true);
    kv.commit(t, [9, 9, 3, 4], 4);
    kv.release(t);
    expect(kv.match([1, 2, 3, 4, 5]).cachedTokens).toBe(0);
    expect(kv.match([9, 9, 3, 4, 5]).cachedTokens).toBe(4);
  });

  it("commits only positions whose keys were written and whose tokens are known", () => {
    const kv = new KvPages(8, 4);
    const { table } = kv.match(range(0, 5));
    kv.ensure(table, 12);
    kv.commit(table, range(0, 12), 7); // page 0 only
    expect(kv.cachedPages).toBe(1);
    kv.commit(table, range(0, 6), 12); // tokens known up to 6: still page 0 only
    expect(kv.cachedPages).toBe(1);
    kv.commit(table, range(0, 12), 12);
    expect(kv.cachedPages).toBe(3);
    kv.release(table);
  });

  it("a prefix computed twice at once is cached once; the chain goes on through the first", () => {
    const kv = new KvPages(8, 2);
    const a = kv.match([1, 2, 3]).table;
    const b = kv.match([1, 2, 3]).table;
    kv.ensure(a, 4);
    kv.ensure(b, 4);
    kv.commit(a, [1, 2, 3, 4], 4);
    kv.commit(b, [1, 2, 3, 4], 4);
    expect(kv.cachedPages).toBe(2);
    kv.release(a);
    kv.release(b);
    expect(kv.available).toBe(8);
    expect(kv.match([1, 2, 3, 4, 5]).table.pages).toEqual([0, 1]);
  });

  it("fork shares full pages and gives the partial last page a copy", () => {
    const kv = new KvPages(8, 4);
    const { table } = kv.match(range(0, 10));
    kv.ensure(table, 10);
    const forked = kv.fork(table, 9)!;
    expect(forked.table.pages.slice(0, 2)).toEqual(table.pages.slice(0, 2));
    expect(forked.copy).toEqual({ from: table.pages[2], to: forked.table.pages[2] });
    expect(forked.table.pages[2]).not.toBe(table.pages[2]);
    expect(kv.refCount(table.pages[0]!)).toBe(2);
    expect(kv.refCount(table.pages[2]!)).toBe(1);
    // On a page boundary there is nothing to copy.
    const aligned = kv.fork(table, 8)!;
    expect(aligned.copy).toBeUndefined();
    expect(aligned.table.pages).toEqual(table.pages.slice(0, 2));
    kv.release(table);
    kv.release(forked.table);
    kv.release(aligned.table);
    expect(kv.available).toBe(8);
  });

  it("fork without a page for the copy changes nothing", () => {
    const kv = new KvPages(2, 4);
    const { table } = kv.match([1]);
    kv.ensure(table, 6);
    expect(kv.fork(table, 6)).toBeUndefined();
    expect(kv.refCount(0)).toBe(1);
  });

  it("keeps its invariants under random use (property test)", () => {
    const random = seededRandom(15);
    const pick = (n: number) => Math.floor(random() * n);
    const kv = new KvPages(24, 4);
    const live: { table: PageTable; tokens: number[] }[] = [];
    // What the device would hold: the token whose keys each page slot has.
    const contents = new Map<number, number[]>();
    const write = (table: PageTable, tokens: readonly number[], from: number) => {
      for (let i = from; i < tokens.length; i++) {
        const page = table.pages[Math.floor(i / 4)]!;
        if (!contents.has(page)) contents.set(page, []);
        contents.get(page)![i % 4] = tokens[i]!;
      }
    };
    for (let step = 0; step < 3000; step++) {
      const action = pick(4);
      if (action === 0 || live.length === 0) {
        // A new sequence over a small alphabet, so prefixes repeat.
        const prompt = Array.from({ length: 1 + pick(20) }, () => pick(3));
        const { table, cachedTokens } = kv.match(prompt);
        expect(cachedTokens).toBeLessThan(prompt.length);
        // Reused pages hold exactly this prompt's tokens.
        for (let i = 0; i < cachedTokens; i++) expect(contents.get(table.pages[i >> 2]!)![i % 4]).toBe(prompt[i]);
        if (!kv.ensure(table, prompt.length)) {
          kv.release(table);
          continue;
        }
        write(table, prompt, cachedTokens);
        live.push({ table, tokens: prompt });
      } else if (action === 1) {
        const s = live[pick(live.length)]!;
        const grown = [...s.tokens, pick(3)];
        if (kv.ensure(s.table, grown.length)) {
          write(s.table, grown, s.tokens.length);
          s.tokens = grown;
        }
        kv.commit(s.table, s.tokens, s.tokens.length);
      } else if (action === 2) {
        const s = live[pick(live.length)]!;
        const f = kv.fork(s.table, s.tokens.length);
        if (f?.copy) contents.set(f.copy.to, [...contents.get(f.copy.from)!]);
        if (f) live.push({ table: f.table, tokens: [...s.tokens] });
      } else {
        const [s] = live.splice(pick(live.length), 1);
        kv.commit(s!.table, s!.tokens, s!.tokens.length);
        kv.release(s!.table);
      }
      // Reference counts equal the number of live tables holding each page.
      const holders = new Map<number, number>();
      for (const s of live) for (const p of s.table.pages) holders.set(p, (holders.get(p) ?? 0) + 1);
      for (let p = 0; p < kv.pageCount; p++) expect(kv.refCount(p)).toBe(holders.get(p) ?? 0);
      expect(kv.available).toBe(kv.pageCount - holders.size);
      // A page is written by at most one sequence: no page past a sequence's full pages is shared.
      const tails = live.flatMap((s) => s.table.pages.slice(Math.floor(s.tokens.length / 4)));
      expect(new Set(tails).size).toBe(tails.length);
    }
    for (const s of live) kv.release(s.table);
    expect(kv.available).toBe(kv.pageCount);
  });
});
