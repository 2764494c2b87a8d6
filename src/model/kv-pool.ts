/**
 * Checks and sizes shared by both runners' paged KV pools: the page size, the context a
 * sequence may hold, and whether a page table covers what a call reads and writes.
 */
import { InvalidArgumentError } from "../errors.ts";
import { DEFAULT_CONTEXT_CAP, DEFAULT_PAGE_SIZE, type PageCopy } from "./runner.ts";

/** `pageSize`, checked: a power of two in [16, 64]. */
export function resolvePageSize(pageSize: number | undefined): number {
  const size = pageSize ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 16 || size > 64 || (size & (size - 1)) !== 0) {
    throw new InvalidArgumentError("pageSize", `${size} is not a power of two in [16, 64]`);
  }
  return size;
}

/** The most positions one sequence may hold: `wanted`, or the trained context capped at 8192. */
export function resolveContextLength(wanted: number | undefined, trained: number): number {
  if (wanted === undefined) return Math.min(trained, DEFAULT_CONTEXT_CAP);
  if (!Number.isSafeInteger(wanted) || wanted < 1) {
    throw new InvalidArgumentError("contextLength", `expected a positive whole number, got ${wanted}`);
  }
  if (wanted > trained) {
    throw new InvalidArgumentError("contextLength", `${wanted} is more than the model's trained context of ${trained} positions (--context)`);
  }
  return wanted;
}

/** Pages a page table needs to hold positions [0, positions). */
export function pagesFor(positions: number, pageSize: number): number {
  return Math.ceil(positions / pageSize);
}

/**
 * Throws InvalidArgumentError unless `pages` covers positions [0, lastPos] with pages of
 * the pool. `where` names the call's argument in the message.
 */
export function checkPageTable(pages: readonly number[] | undefined, lastPos: number, pageSize: number, pageCount: number, where: string): void {
  if (!Array.isArray(pages)) throw new InvalidArgumentError(`${where}.pages`, "a page table is required");
  const needed = pagesFor(lastPos + 1, pageSize);
  if (pages.length < needed) {
    throw new InvalidArgumentError(`${where}.pages`, `${pages.length} pages hold ${pages.length * pageSize} positions, position ${lastPos} needs ${needed}`);
  }
  for (let i = 0; i < needed; i++) checkPage(pages[i], pageCount, `${where}.pages[${i}]`);
}

/** Throws InvalidArgumentError unless `page` is a page of a pool of `pageCount`. */
export function checkPage(page: number | undefined, pageCount: number, where: string): void {
  if (page === undefined || !Number.isInteger(page) || page < 0 || page >= pageCount) {
    throw new InvalidArgumentError(where, `page ${page} is outside the pool [0, ${pageCount})`);
  }
}

/** Throws InvalidArgumentError for a copy from or to a page outside the pool. */
export function checkCopies(copies: readonly PageCopy[], pageCount: number): void {
  copies.forEach((c, i) => {
    checkPage(c.from, pageCount, `copies[${i}].from`);
    checkPage(c.to, pageCount, `copies[${i}].to`);
  });
}

/**
 * Throws InvalidArgumentError when two entries of one step write the same page: one would
 * overwrite the other's keys (a shared page must be copied before it is written).
 * @param writes per entry: its page table and the positions [first, last] it writes.
 */
export function checkDisjointWrites(writes: readonly { pages: readonly number[]; first: number; last: number }[], pageSize: number): void {
  const writer = new Map<number, number>();
  writes.forEach((w, entry) => {
    for (let i = Math.floor(w.first / pageSize); i <= Math.floor(w.last / pageSize); i++) {
      const page = w.pages[i]!;
      const other = writer.get(page);
      if (other !== undefined && other !== entry) {
        throw new InvalidArgumentError(`batch[${entry}].pages`, `page ${page} is also written by batch[${other}] in the same step`);
      }
      writer.set(page, entry);
    }
  });
}

/** The page table 0, 1, 2, … covering [0, positions): `logits()` without a table. */
export function identityPages(positions: number, pageSize: number): number[] {
  return Array.from({ length: pagesFor(positions, pageSize) }, (_, i) => i);
}

/**
 * Pages [slot·P, (slot+1)·P) with P = ceil(contextLength / pageSize): a fixed range per
 * slot, the layout of a slotted cache, for callers that do not share pages. The pool must
 * hold maxSlots·P pages (the CPU runner's default does).
 */
export function slotPages(slot: number, contextLength: number, pageSize: number): number[] {
  const perSlot = pagesFor(contextLength, pageSize);
  return Array.from({ length: perSlot }, (_, i) => slot * perSlot + i);
}
