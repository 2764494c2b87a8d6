/**
 * SentencePiece-style BPE over scores (`tokenizer.ggml.model = "llama"`).
 *
 * The text (spaces written as `▁`) starts as one symbol per code point; the adjacent
 * pair whose concatenation is the highest-scoring vocabulary entry merges first (ties:
 * leftmost), until no adjacent pair forms an entry. A symbol that is not in the
 * vocabulary comes out as its UTF-8 bytes, each as a `<0xNN>` token.
 */
import { TokenizerError } from "../errors.ts";
import { Heap } from "./heap.ts";
import { utf8 } from "./unicode.ts";
import type { Vocab } from "./vocab.ts";

interface Bigram {
  readonly left: number;
  readonly right: number;
  readonly score: number;
  /** Length of the pair when queued; a different length now means it is stale. */
  readonly size: number;
}

const higherScoreFirst = (a: Bigram, b: Bigram): boolean => a.score > b.score || (a.score === b.score && a.left < b.left);

/** The SentencePiece word-boundary marker that stands for a space. */
export const SPACE_MARKER = "\u2581";

// Bounds the per-chunk cache so that a stream of unique words cannot grow it forever.
const MAX_CACHED_CHUNKS = 200_000;

/** Encodes text fragments with a llama-kind vocabulary. */
export class SpmEncoder {
  private readonly byteTokens: (number | undefined)[];
  /** Every pair of adjacent code points inside some token's text. */
  private innerPairs?: Set<string>;
  private readonly cache = new Map<string, readonly number[]>();

  constructor(private readonly vocab: Vocab) {
    this.byteTokens = Array.from({ length: 256 }, (_, b) => {
      const hex = b.toString(16).toUpperCase().padStart(2, "0");
      // A `<0xNN>` token, or else a token that is the byte itself (ASCII only).
      return vocab.tokenToId.get(`<0x${hex}>`) ?? (b < 0x80 ? vocab.tokenToId.get(String.fromCharCode(b)) : undefined);
    });
  }

  /**
   * Appends the ids of `text` (already prefixed with a space where due) to `out`.
   *
   * Merging runs over the whole text in llama.cpp, but no merge can join two code points
   * that are adjacent in no token's text, so the text is cut there into chunks that
   * merge independently (in practice, words) and whose results are cached. The merge
   * order inside a chunk is unchanged, so the ids are the same.
   */
  encode(text: string, out: number[]): void {
    const s = text.replaceAll(" ", SPACE_MARKER);
    const pairs = (this.innerPairs ??= this.buildInnerPairs());
    let chunkStart = 0;
    let prev = "";
    for (let i = 0; i < s.length;) {
      const cp = s.codePointAt(i) as number;
      const ch = cp > 0xffff ? s.slice(i, i + 2) : (s[i] as string);
      if (i > 0 && !pairs.has(prev + ch)) {
        this.encodeChunk(s.slice(chunkStart, i), out);
        chunkStart = i;
      }
      prev = ch;
      i += ch.length;
    }
    if (chunkStart < s.length) this.encodeChunk(s.slice(chunkStart), out);
  }

  private buildInnerPairs(): Set<string> {
    const pairs = new Set<string>();
    for (const text of this.vocab.tokens) {
      const chars = [...text];
      for (let i = 1; i < chars.length; i++) pairs.add((chars[i - 1] as string) + chars[i]);
    }
    return pairs;
  }

  private encodeChunk(s: string, out: number[]): void {
    let ids = this.cache.get(s);
    if (!ids) {
      const fresh: number[] = [];
      this.merge(s, fresh);
      if (this.cache.size >= MAX_CACHED_CHUNKS) this.cache.clear();
      this.cache.set(s, fresh);
      ids = fresh;
    }
    for (const id of ids) out.push(id);
  }

  /** llama.cpp's SentencePiece merge loop over `s` (spaces already `▁`). */
  private merge(s: string, out: number[]): void {
    if (s.length === 0) return;
    const { tokenToId, scores } = this.vocab;

    // One symbol per code point: start offset and length in UTF-16 units, linked list.
    const start: number[] = [];
    for (let i = 0; i < s.length; i++) {
      start.push(i);
      const c = s.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) i++;
      }
    }
    const count = start.length;
    const len = new Int32Array(count);
    const next = new Int32Array(count);
    const prev = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      len[i] = (i + 1 < count ? (start[i + 1] as number) : s.length) - (start[i] as number);
      next[i] = i + 1 < count ? i + 1 : -1;
      prev[i] = i - 1;
    }

    const queue = new Heap<Bigram>(higherScoreFirst);
    const tryAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const size = (len[left] as number) + (len[right] as number);
      const id = tokenToId.get(s.substr(start[left] as number, size));
      if (id === undefined) return;
      queue.push({ left, right, score: scores[id] as number, size });
    };
    for (let i = 1; i < count; i++) tryAdd(i - 1, i);

    for (let bigram = queue.pop(); bigram !== undefined; bigram = queue.pop()) {
      const { left, right } = bigram;
      const ln = len[left] as number;
      const rn = len[right] as number;
      if (ln === 0 || rn === 0 || ln + rn !== bigram.size) continue;
      len[left] = ln + rn;
      len[right] = 0;
      const after = next[right] as number;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      tryAdd(prev[left] as number, left);
      tryAdd(left, after);
    }

    for (let i = 0; i !== -1; i = next[i] as number) {
      const piece = s.substr(start[i] as number, len[i] as number);
      const id = tokenToId.get(piece);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      for (const b of utf8(piece)) {
        const byteId = this.byteTokens[b];
        if (byteId === undefined) {
          throw new TokenizerError(
            "NO_BYTE_TOKEN",
            `"${piece}" is not in the vocabulary and byte 0x${b.toString(16).padStart(2, "0")} has no <0xNN> token`,
          );
        }
        out.push(byteId);
      }
    }
  }
}
