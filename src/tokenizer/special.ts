/**
 * Finding special tokens written out in text (`<|im_start|>`), before ordinary
 * tokenization runs on the text between them.
 *
 * llama.cpp takes the special tokens longest first and, for each, splits every text
 * fragment left so far at its occurrences. This module gets the same fragments without
 * a pass per special token (a vocabulary may hold hundreds of thousands of them): one
 * scan lists every occurrence (looking up the text at each position for each length a
 * special token has), then occurrences are accepted in that same priority order where
 * they do not overlap one accepted before.
 */
import { TokenAttr, type Vocab } from "./vocab.ts";

/** A piece of input: text to tokenize, or a special token already recognized. */
export type Fragment = { readonly text: string } | { readonly token: number };

/** Length of a string's UTF-8 encoding, without encoding it. */
function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Matches one set of special tokens (e.g. all of them, or only user-defined ones). */
export class SpecialMatcher {
  /** Text lengths (UTF-16 units) that occur in the set, longest first. */
  private readonly lengths: number[];
  /** First UTF-16 unit of every token in the set, to skip most positions at once. */
  private readonly firstUnits = new Set<number>();

  constructor(private readonly vocab: Vocab, private readonly include: (attr: number) => boolean) {
    const lengths = new Set<number>();
    for (let id = 0; id < vocab.tokens.length; id++) {
      if (!include(vocab.attrs[id] as number)) continue;
      const text = vocab.tokens[id] as string;
      lengths.add(text.length);
      this.firstUnits.add(text.charCodeAt(0));
    }
    this.lengths = [...lengths].sort((a, b) => b - a);
  }

  /** True when the set has no tokens. */
  get empty(): boolean {
    return this.lengths.length === 0;
  }

  /** Splits `text` into text fragments and special-token fragments, in order. */
  partition(text: string): Fragment[] {
    if (text.length === 0) return [];
    if (this.empty) return [{ text }];
    const byToken = this.occurrences(text);
    if (byToken.size === 0) return [{ text }];

    // Accept occurrences token by token in llama.cpp's order (longest in UTF-8 bytes
    // first, equal lengths by id); an occurrence is kept when it overlaps nothing kept.
    const rank = new Map([...byToken.keys()].map((id) => [id, utf8Length(this.vocab.tokens[id] as string)]));
    const order = [...byToken.keys()].sort((a, b) => (rank.get(b) as number) - (rank.get(a) as number) || a - b);
    const claimed = new Uint8Array(text.length);
    const accepted: { start: number; end: number; token: number }[] = [];
    for (const token of order) {
      for (const [start, end] of byToken.get(token) as [number, number][]) {
        let free = true;
        for (let i = start; i < end; i++) {
          if (claimed[i]) {
            free = false;
            break;
          }
        }
        if (!free) continue;
        claimed.fill(1, start, end);
        accepted.push({ start, end, token });
      }
    }
    accepted.sort((a, b) => a.start - b.start);
    const out: Fragment[] = [];
    let pos = 0;
    for (const { start, end, token } of accepted) {
      if (start > pos) out.push({ text: text.slice(pos, start) });
      out.push({ token });
      pos = end;
    }
    if (pos < text.length) out.push({ text: text.slice(pos) });
    return out;
  }

  /** Every occurrence of every token in the set, grouped by token, in text order. */
  private occurrences(text: string): Map<number, [number, number][]> {
    const found = new Map<number, [number, number][]>();
    const { tokenToId, attrs } = this.vocab;
    for (let i = 0; i < text.length; i++) {
      if (!this.firstUnits.has(text.charCodeAt(i))) continue;
      for (const len of this.lengths) {
        if (i + len > text.length) continue;
        const id = tokenToId.get(text.substr(i, len));
        if (id === undefined || !this.include(attrs[id] as number)) continue;
        let list = found.get(id);
        if (!list) found.set(id, (list = []));
        list.push([i, i + len]);
      }
    }
    return found;
  }
}

/** The special-token sets of a vocabulary: all of them, and those parsed even when special parsing is off. */
export function specialMatchers(vocab: Vocab): { all: SpecialMatcher; userDefined: SpecialMatcher } {
  const special = TokenAttr.Control | TokenAttr.UserDefined | TokenAttr.Unknown;
  return {
    all: new SpecialMatcher(vocab, (a) => (a & special) !== 0),
    // Without special parsing llama.cpp still splits out user-defined tokens, but never
    // control or unknown ones.
    userDefined: new SpecialMatcher(vocab, (a) => (a & TokenAttr.UserDefined) !== 0 && (a & (TokenAttr.Control | TokenAttr.Unknown)) === 0),
  };
}
