/**
 * Code-point ranges as UTF-8 byte-range sequences (the algorithm of Rust's
 * `regex-syntax::utf8`): [U+0080, U+07FF] is the one sequence [C2-DF][80-BF], while a
 * range whose ends differ in a lower byte splits into several sequences.
 */

/** Byte ranges allowed at one byte of a sequence. */
export type BytePosition = (readonly [number, number])[];
/** A UTF-8 sequence whose every byte lies in its position's ranges. */
export type ByteSequence = BytePosition[];

const LENGTH_LIMITS = [0x7f, 0x7ff, 0xffff, 0x10ffff];

/** The byte sequences that match exactly the code points of `ranges` (surrogates never). */
export function utf8RangeSequences(ranges: readonly (readonly [number, number])[]): ByteSequence[] {
  const ascii: BytePosition = [];
  const out: ByteSequence[] = [];
  for (const [lo, hi] of withoutSurrogates(ranges)) {
    let start = lo;
    for (let n = 1; n <= 4 && start <= hi; n++) {
      const end = Math.min(hi, LENGTH_LIMITS[n - 1]!);
      if (start > end) continue;
      for (const seq of splitSameLength(start, end, n)) {
        if (n === 1) ascii.push(seq[0]![0]!);
        else out.push(seq);
      }
      start = end + 1;
    }
  }
  return ascii.length > 0 ? [[ascii], ...out] : out;
}

function withoutSurrogates(ranges: readonly (readonly [number, number])[]): [number, number][] {
  const out: [number, number][] = [];
  for (const [lo, hi] of ranges) {
    if (hi < 0xd800 || lo > 0xdfff) out.push([lo, hi]);
    else {
      if (lo < 0xd800) out.push([lo, 0xd7ff]);
      if (hi > 0xdfff) out.push([0xe000, hi]);
    }
  }
  return out;
}

/** [lo, hi], all of one encoded length n, as sequences that are products of byte ranges. */
function splitSameLength(lo: number, hi: number, n: number): ByteSequence[] {
  if (n === 1) return [[[[lo, hi]]]];
  for (let i = 1; i < n; i++) {
    const mask = (1 << (6 * i)) - 1;
    if ((lo & ~mask) !== (hi & ~mask)) {
      if ((lo & mask) !== 0) return [...splitSameLength(lo, lo | mask, n), ...splitSameLength((lo | mask) + 1, hi, n)];
      if ((hi & mask) !== mask) return [...splitSameLength(lo, (hi & ~mask) - 1, n), ...splitSameLength(hi & ~mask, hi, n)];
    }
  }
  const a = encode(lo);
  const b = encode(hi);
  return [a.map((x, i) => [[x, b[i]!] as const])];
}

function encode(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 63)];
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
}
