/**
 * Byte-level BPE with merge ranks (`tokenizer.ggml.model = "gpt2"`).
 *
 * Text is split into pre-tokens by the pre-tokenizer, each pre-token is written in
 * GPT-2's byte alphabet (one character per UTF-8 byte), and within each pre-token the
 * adjacent pair with the lowest merge rank merges first (ties: leftmost) until no pair
 * has a rank. Results are cached per pre-token, since text repeats words.
 */
import { Heap } from "./heap.ts";
import { preTokenize } from "./pretokenize.ts";
import { byteLevelEncode, codePointsOf, stringFromCodePoints } from "./unicode.ts";
import { MERGE_KEY_SEPARATOR, type Vocab } from "./vocab.ts";

interface Bigram {
  readonly left: number;
  readonly right: number;
  readonly rank: number;
  /** Length of the pair when queued; a different length now means it is stale. */
  readonly size: number;
}

const lowerRankFirst = (a: Bigram, b: Bigram): boolean => a.rank < b.rank || (a.rank === b.rank && a.left < b.left);

// Bounds the per-word cache so that a stream of unique words cannot grow it forever.
const MAX_CACHED_WORDS = 200_000;

/** Encodes text fragments with a gpt2-kind vocabulary. */
export class BpeEncoder {
  private readonly cache = new Map<string, readonly number[]>();

  constructor(private readonly vocab: Vocab) {}

  /** Appends the ids of `text` to `out`. */
  encode(text: string, out: number[]): void {
    const cpts = codePointsOf(text);
    let pos = 0;
    for (const n of preTokenize(this.vocab.pre, cpts)) {
      const word = stringFromCodePoints(cpts, pos, pos + n);
      pos += n;
      let ids = this.cache.get(word);
      if (!ids) {
        ids = this.encodeWord(byteLevelEncode(word));
        if (this.cache.size >= MAX_CACHED_WORDS) this.cache.clear();
        this.cache.set(word, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  /** BPE on one pre-token already in the byte alphabet (one UTF-16 unit per byte). */
  private encodeWord(word: string): number[] {
    const { tokenToId, mergeRanks } = this.vocab;
    if (this.vocab.pre.ignoreMerges) {
      const whole = tokenToId.get(word);
      if (whole !== undefined) return [whole];
    }
    const count = word.length;
    const len = new Int32Array(count).fill(1);
    const next = new Int32Array(count);
    const prev = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      next[i] = i + 1 < count ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const queue = new Heap<Bigram>(lowerRankFirst);
    const tryAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const ln = len[left] as number;
      const rn = len[right] as number;
      const rank = mergeRanks.get(word.substr(left, ln) + MERGE_KEY_SEPARATOR + word.substr(right, rn));
      if (rank !== undefined) queue.push({ left, right, rank, size: ln + rn });
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

    const ids: number[] = [];
    for (let i = 0; i !== -1 && count > 0; i = next[i] as number) {
      const piece = word.substr(i, len[i] as number);
      const id = tokenToId.get(piece);
      if (id !== undefined) {
        ids.push(id);
        continue;
      }
      // A piece with no token (a merge whose result is missing from the vocabulary):
      // llama.cpp looks each UTF-8 byte of it up as a one-byte text, which only ASCII
      // characters of the byte alphabet can match; the rest are dropped.
      for (let k = 0; k < piece.length; k++) {
        const c = piece.charCodeAt(k);
        const single = c < 0x80 ? tokenToId.get(piece[k] as string) : undefined;
        if (single !== undefined) ids.push(single);
      }
    }
    return ids;
  }
}
