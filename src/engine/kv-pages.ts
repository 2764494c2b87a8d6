/**
 * The KV pool's bookkeeping on the CPU: which page holds what, who uses it, and which
 * finished prefixes are kept for reuse (the prefix cache). The GPU only ever sees page
 * numbers through each sequence's page table; this module decides them.
 *
 * Model (vLLM's block manager, simplified):
 * - Every page has a reference count: the sequences whose page table holds it.
 * - A *full* page whose tokens are all known can be registered in the prefix cache under
 *   a key chained from its parent page's key and its own tokens, so a key names the
 *   whole prefix up to the page's end. Lookups compare the tokens and the parent exactly:
 *   a hash collision can never hand a sequence someone else's keys and values.
 * - A page whose count drops to 0 stays cached (reusable) if registered, and is evicted
 *   least recently used only when a free page is needed and none is left.
 * - `fork` shares a sequence's full pages with a new sequence and gives it a fresh page
 *   for the partial last one; the caller copies that page on the device (copy-on-write).
 */

/** One page's worth of a sequence's prefix, registered for reuse. */
interface CachedBlock {
  /** Unique for the allocator's life: children name their parent by it. */
  readonly id: number;
  readonly page: number;
  readonly parentId: number;
  readonly tokens: readonly number[];
  readonly hash: number;
}

/** A page the caller must copy on the device before the next step: `to` gets `from`'s contents. */
export interface PageCopy {
  readonly from: number;
  readonly to: number;
}

/** A sequence's pages, in position order: `pages[i]` holds positions [i·pageSize, (i+1)·pageSize). */
export class PageTable {
  readonly pages: number[] = [];
  /**
   * Cache ids of the leading full pages that are registered (by this sequence or matched
   * from the cache): `blockIds[i]` describes `pages[i]`'s prefix. Shorter than `pages`.
   */
  readonly blockIds: number[] = [];
  /** Whether the table was released (its pages are no longer its own). */
  released = false;
}

/** The parent id of a sequence's first page. */
const ROOT_ID = 0;

/** FNV-1a over the parent id and the tokens, as a 32-bit key (collisions are checked exactly). */
function blockHash(parentId: number, tokens: readonly number[]): number {
  let h = 0x811c9dc5;
  const mix = (word: number) => {
    for (let shift = 0; shift < 32; shift += 8) {
      h ^= (word >>> shift) & 0xff;
      h = Math.imul(h, 0x01000193);
    }
  };
  mix(parentId);
  for (const t of tokens) mix(t);
  return h >>> 0;
}

function sameTokens(a: readonly number[], b: readonly number[], offset: number): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[offset + i]) return false;
  return true;
}

/** Pages of a KV pool: allocation, reference counts, the prefix cache and its LRU eviction. */
export class KvPages {
  readonly pageCount: number;
  readonly pageSize: number;
  readonly #refCounts: Int32Array;
  /** Pages nobody holds and nothing caches; popped from the end. */
  readonly #free: number[];
  /** Cached pages nobody holds, oldest use first (a Map keeps insertion order). */
  readonly #evictable = new Map<number, true>();
  /** The registered block of each page, if any. */
  readonly #blockOfPage = new Map<number, CachedBlock>();
  readonly #blocksByHash = new Map<number, CachedBlock[]>();
  #nextBlockId = ROOT_ID + 1;

  constructor(pageCount: number, pageSize: number) {
    if (!Number.isInteger(pageCount) || pageCount < 1) throw new RangeError(`pageCount must be ≥ 1, got ${pageCount}`);
    if (!Number.isInteger(pageSize) || pageSize < 1) throw new RangeError(`pageSize must be ≥ 1, got ${pageSize}`);
    this.pageCount = pageCount;
    this.pageSize = pageSize;
    this.#refCounts = new Int32Array(pageCount);
    // Reversed so that pages come out 0, 1, 2, …: easier to read in tests and dumps.
    this.#free = Array.from({ length: pageCount }, (_, i) => pageCount - 1 - i);
  }

  /** Pages a sequence could get now: free ones and cached ones nobody holds. */
  get available(): number {
    return this.#free.length + this.#evictable.size;
  }

  /** Pages registered in the prefix cache (held or not). */
  get cachedPages(): number {
    return this.#blockOfPage.size;
  }

  /** Pages held by at least one sequence. */
  get usedPages(): number {
    return this.pageCount - this.available;
  }

  /** Pages needed to hold `positions` positions. */
  pagesFor(positions: number): number {
    return Math.ceil(positions / this.pageSize);
  }

  /** How many references `page` has (for tests and checks). */
  refCount(page: number): number {
    return this.#refCounts[page] ?? 0;
  }

  /**
   * A new page table for a sequence whose first tokens are `prompt`, holding the longest
   * chain of cached full pages that matches the prompt's start (pinned: they are not
   * evicted while the table holds them). At least the prompt's last token is left out,
   * so that feeding it produces logits. Returns the table and how many tokens it covers.
   */
  match(prompt: readonly number[]): { table: PageTable; cachedTokens: number } {
    const table = new PageTable();
    const ps = this.pageSize;
    const fullPages = Math.floor((prompt.length - 1) / ps);
    let parentId = ROOT_ID;
    for (let i = 0; i < fullPages; i++) {
      const block = this.#lookup(parentId, prompt, i * ps);
      if (!block) break;
      this.#pin(block.page);
      table.pages.push(block.page);
      table.blockIds.push(block.id);
      parentId = block.id;
    }
    return { table, cachedTokens: table.pages.length * ps };
  }

  /**
   * Grows `table` to hold `positions` positions. All or nothing: returns false, changing
   * nothing, when the pool cannot supply the pages (free or evictable) right now.
   */
  ensure(table: PageTable, positions: number): boolean {
    const missing = this.pagesFor(positions) - table.pages.length;
    if (missing <= 0) return true;
    if (missing > this.available) return false;
    for (let i = 0; i < missing; i++) table.pages.push(this.#take());
    return true;
  }

  /**
   * Registers the table's full pages whose tokens are known: `tokens` are the sequence's
   * tokens from position 0, and positions below `written` hold their keys and values.
   * Pages already cached under the same prefix (computed by another sequence) are not
   * registered twice: the chain continues through the existing block.
   */
  commit(table: PageTable, tokens: readonly number[], written: number): void {
    const ps = this.pageSize;
    const full = Math.min(Math.floor(Math.min(written, tokens.length) / ps), table.pages.length);
    for (let i = table.blockIds.length; i < full; i++) {
      const parentId = i === 0 ? ROOT_ID : table.blockIds[i - 1]!;
      const existing = this.#lookup(parentId, tokens, i * ps);
      if (existing) {
        table.blockIds.push(existing.id);
        continue;
      }
      const page = table.pages[i]!;
      if (this.#blockOfPage.has(page)) {
        // Shared with a fork whose chain registered it under another id: keep that one.
        table.blockIds.push(this.#blockOfPage.get(page)!.id);
        continue;
      }
      const blockTokens = tokens.slice(i * ps, (i + 1) * ps);
      const block: CachedBlock = {
        id: this.#nextBlockId++,
        page,
        parentId,
        tokens: blockTokens,
        hash: blockHash(parentId, blockTokens),
      };
      this.#blockOfPage.set(page, block);
      const bucket = this.#blocksByHash.get(block.hash);
      if (bucket) bucket.push(block);
      else this.#blocksByHash.set(block.hash, [block]);
      table.blockIds.push(block.id);
    }
  }

  /**
   * A table for a new sequence that continues `table`'s first `written` positions: full
   * pages are shared, the partial last page (if any) gets a fresh page that the caller
   * must fill with a copy of the original's on the device. Returns undefined when no page
   * is available for that copy.
   */
  fork(table: PageTable, written: number): { table: PageTable; copy?: PageCopy } | undefined {
    const ps = this.pageSize;
    const fullPages = Math.floor(written / ps);
    const partial = written % ps !== 0;
    if (partial && this.available < 1) return undefined;
    const child = new PageTable();
    for (let i = 0; i < fullPages; i++) {
      const page = table.pages[i]!;
      this.#pin(page);
      child.pages.push(page);
      if (i < table.blockIds.length) child.blockIds.push(table.blockIds[i]!);
    }
    if (!partial) return { table: child };
    const to = this.#take();
    child.pages.push(to);
    return { table: child, copy: { from: table.pages[fullPages]!, to } };
  }

  /**
   * Drops the table's hold on its pages. Registered pages nobody else holds become
   * evictable, the deepest first (so a prefix's root outlives its leaves); the others are
   * free at once. Safe to call twice.
   */
  release(table: PageTable): void {
    if (table.released) return;
    table.released = true;
    for (let i = table.pages.length - 1; i >= 0; i--) this.#unpin(table.pages[i]!);
    table.pages.length = 0;
    table.blockIds.length = 0;
  }

  /** Forgets every cached prefix nobody holds (their pages become free). */
  clearCache(): void {
    for (const page of [...this.#evictable.keys()]) {
      this.#evictable.delete(page);
      this.#forget(page);
      this.#free.push(page);
    }
  }

  #lookup(parentId: number, tokens: readonly number[], offset: number): CachedBlock | undefined {
    const slice = tokens.slice(offset, offset + this.pageSize);
    if (slice.length < this.pageSize) return undefined;
    const bucket = this.#blocksByHash.get(blockHash(parentId, slice));
    return bucket?.find((b) => b.parentId === parentId && sameTokens(b.tokens, tokens, offset));
  }

  /** One more holder of `page`; a cached page nobody held leaves the eviction order. */
  #pin(page: number): void {
    if (this.#refCounts[page] === 0) this.#evictable.delete(page);
    this.#refCounts[page]!++;
  }

  #unpin(page: number): void {
    const count = --this.#refCounts[page]!;
    if (count < 0) throw new Error(`page ${page} released more often than held`);
    if (count > 0) return;
    if (this.#blockOfPage.has(page)) this.#evictable.set(page, true);
    else this.#free.push(page);
  }

  /** A page for exclusive use: a free one, else the least recently used cached one. */
  #take(): number {
    let page = this.#free.pop();
    if (page === undefined) {
      const oldest = this.#evictable.keys().next();
      if (oldest.done) throw new Error("no page available: check `available` first");
      page = oldest.value;
      this.#evictable.delete(page);
      this.#forget(page);
    }
    this.#refCounts[page] = 1;
    return page;
  }

  /** Removes `page`'s block from the cache; its children become unreachable (their parent id is gone). */
  #forget(page: number): void {
    const block = this.#blockOfPage.get(page);
    if (!block) return;
    this.#blockOfPage.delete(page);
    const bucket = this.#blocksByHash.get(block.hash)!;
    const rest = bucket.filter((b) => b !== block);
    if (rest.length > 0) this.#blocksByHash.set(block.hash, rest);
    else this.#blocksByHash.delete(block.hash);
  }
}
