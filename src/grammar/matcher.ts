/**
 * Grammar-constrained decoding over a model's vocabulary.
 *
 * The matcher follows llama.cpp's stack-based approach (src/llama-grammar.cpp): a state is
 * the set of stacks of grammar positions that the text so far can be in, and a byte
 * advances every stack whose top position allows it. Two additions make it fast enough
 * for a 150k-token vocabulary:
 * - stacks are interned linked lists and states interned sets of stacks, so a state is a
 *   number and the transition (state, byte) → state is computed once and then looked up
 *   (a lazily built automaton);
 * - the mask of a state walks the vocabulary's trie once, skipping every subtree whose
 *   first byte the grammar refuses, and is cached per state (inside a JSON string the
 *   state after each character is the same, so most steps are a cache hit).
 */
import { GrammarError } from "./errors.ts";
import { type Grammar, parseGbnf } from "./gbnf.ts";
import { type GrammarVocabulary, tokenTrie, type TokenTrie } from "./vocabulary.ts";

const END = 0;
const BYTES = 1;
const RULE = 2;
/** The empty stack: the grammar has matched a whole `root`. */
const EMPTY = 0;
const DEAD = -1;
const UNKNOWN = -2;
/** Masks kept per compiled grammar (each n_vocab/8 bytes: 19 KiB for 151k tokens). */
const MASK_CACHE_SIZE = 512;
/** Interned stacks before the grammar refuses to grow further (a runaway nesting). */
const MAX_STACK_NODES = 4_000_000;

/**
 * A grammar compiled against one vocabulary: the shared automaton and mask cache that
 * every {@link GrammarMatcher} of it uses. Make one per (grammar, vocabulary) and reuse it
 * across requests; it is not tied to any sequence.
 */
export class TokenGrammar {
  /** Kind of each flat position: END of an alternative, a BYTES set, or a RULE reference. */
  private readonly kind: Uint8Array;
  private readonly sets: Uint32Array;
  private readonly ruleAt: Int32Array;
  private readonly altStarts: number[][];
  private readonly nodePos: number[] = [-1];
  private readonly nodeNext: number[] = [-1];
  private readonly nodeIds = new Map<number, number>();
  private readonly stateStacks: Int32Array[] = [];
  private readonly stateIds = new Map<string, number>();
  private readonly transitions: (Int32Array | undefined)[] = [];
  private readonly masks = new Map<number, Uint32Array>();
  private readonly trie: TokenTrie;
  /** The state before any text. */
  readonly initialState: number;
  /** Words of a token mask: ceil(vocab size / 32). */
  readonly maskWords: number;

  constructor(grammar: Grammar, readonly vocab: GrammarVocabulary) {
    const flat = flatten(grammar);
    this.kind = flat.kind;
    this.sets = flat.sets;
    this.ruleAt = flat.ruleAt;
    this.altStarts = flat.altStarts;
    this.trie = tokenTrie(vocab);
    this.maskWords = Math.ceil(vocab.size / 32);
    const start = new Set<number>();
    for (const alt of this.altStarts[grammar.root]!) this.expand(alt, EMPTY, start, new Set());
    this.initialState = this.intern(start);
  }

  /** Parses GBNF text and compiles it against `vocab`; throws {@link GrammarError}. */
  static fromGbnf(gbnf: string, vocab: GrammarVocabulary): TokenGrammar {
    return new TokenGrammar(parseGbnf(gbnf), vocab);
  }

  /** A new matcher at the start of the grammar. */
  matcher(): GrammarMatcher {
    return new GrammarMatcher(this);
  }

  /** Whether the grammar may end in `state` (a stack is empty). */
  canEnd(state: number): boolean {
    return state >= 0 && this.stateStacks[state]![0] === EMPTY;
  }

  /** Whether no further byte is possible in `state`. */
  isFinal(state: number): boolean {
    const stacks = this.stateStacks[state]!;
    return stacks.length === 1 && stacks[0] === EMPTY;
  }

  /** The state after `byte`, or -1 when the grammar refuses it. */
  advance(state: number, byte: number): number {
    let row = this.transitions[state];
    if (row === undefined) {
      row = new Int32Array(256).fill(UNKNOWN);
      this.transitions[state] = row;
    }
    let next = row[byte]!;
    if (next === UNKNOWN) {
      next = this.computeAdvance(state, byte);
      row[byte] = next;
    }
    return next;
  }

  /** The state after all of `bytes`, or -1. */
  advanceBytes(state: number, bytes: Uint8Array): number {
    let s = state;
    for (let i = 0; i < bytes.length && s >= 0; i++) s = this.advance(s, bytes[i]!);
    return s;
  }

  /**
   * Writes the allowed tokens of `state` into `bits` (bit i of word i>>5 set = token i
   * allowed): every token whose bytes the grammar accepts from here, and the
   * end-of-generation tokens where the grammar may end.
   */
  fillMask(state: number, bits: Uint32Array): void {
    if (bits.length < this.maskWords) throw new GrammarError(`a token mask needs ${this.maskWords} words, got ${bits.length}`);
    let mask = this.masks.get(state);
    if (mask === undefined) {
      mask = this.computeMask(state);
      if (this.masks.size >= MASK_CACHE_SIZE) this.masks.delete(this.masks.keys().next().value as number);
      this.masks.set(state, mask);
    }
    bits.set(mask);
    bits.fill(0, mask.length);
  }

  private computeMask(state: number): Uint32Array {
    const bits = new Uint32Array(this.maskWords);
    const { byte, depth, subtreeEnd, tokenStart, tokens, nodes } = this.trie;
    const stateAt = new Int32Array(this.trie.maxDepth + 1);
    stateAt[0] = state;
    let i = 1;
    while (i < nodes) {
      const d = depth[i]!;
      const s = this.advance(stateAt[d - 1]!, byte[i]!);
      if (s < 0) {
        i = subtreeEnd[i]!;
        continue;
      }
      stateAt[d] = s;
      for (let t = tokenStart[i]!; t < tokenStart[i + 1]!; t++) {
        const id = tokens[t]!;
        bits[id >> 5]! |= 1 << (id & 31);
      }
      i++;
    }
    if (this.canEnd(state)) for (const id of this.vocab.eogIds) bits[id >> 5]! |= 1 << (id & 31);
    return bits;
  }

  private computeAdvance(state: number, byte: number): number {
    const out = new Set<number>();
    const seen = new Set<number>();
    const word = byte >> 5;
    const bit = 1 << (byte & 31);
    for (const node of this.stateStacks[state]!) {
      if (node === EMPTY) continue;
      const pos = this.nodePos[node]!;
      if (this.sets[pos * 8 + word]! & bit) this.expand(pos + 1, this.nodeNext[node]!, out, seen);
    }
    return out.size === 0 ? DEAD : this.intern(out);
  }

  /**
   * Adds to `out` every stack reachable from position `pos` over the stack `next` without
   * consuming a byte: rule references open their alternatives, ends of alternatives pop.
   */
  private expand(pos: number, next: number, out: Set<number>, seen: Set<number>): void {
    const kind = this.kind[pos]!;
    if (kind === END) {
      if (next === EMPTY) out.add(EMPTY);
      else this.expand(this.nodePos[next]!, this.nodeNext[next]!, out, seen);
      return;
    }
    const key = next * this.kind.length + pos;
    if (seen.has(key)) return;
    seen.add(key);
    if (kind === BYTES) {
      out.add(this.node(pos, next));
      return;
    }
    // A reference: remember where to continue (unless that is the end), then open each alternative.
    const after = this.kind[pos + 1] === END ? next : this.node(pos + 1, next);
    for (const alt of this.altStarts[this.ruleAt[pos]!]!) this.expand(alt, after, out, seen);
  }

  private node(pos: number, next: number): number {
    const key = next * this.kind.length + pos;
    let id = this.nodeIds.get(key);
    if (id === undefined) {
      if (this.nodePos.length >= MAX_STACK_NODES) {
        throw new GrammarError(`the grammar nests deeper than ${MAX_STACK_NODES} stack entries allow`, "GRAMMAR_TOO_DEEP");
      }
      id = this.nodePos.length;
      this.nodePos.push(pos);
      this.nodeNext.push(next);
      this.nodeIds.set(key, id);
    }
    return id;
  }

  private intern(stacks: Set<number>): number {
    const sorted = Int32Array.from(stacks).sort();
    const key = sorted.join(",");
    let id = this.stateIds.get(key);
    if (id === undefined) {
      id = this.stateStacks.length;
      this.stateStacks.push(sorted);
      this.stateIds.set(key, id);
    }
    return id;
  }
}

/** One sequence's progress through a {@link TokenGrammar}. */
export class GrammarMatcher {
  private state: number;
  private ended = false;

  constructor(readonly grammar: TokenGrammar) {
    this.state = grammar.initialState;
  }

  /**
   * Advances over token `id`. Returns false (and leaves the matcher as it was) when the
   * grammar does not allow it. An end-of-generation token is allowed where the grammar
   * may end, and terminates the matcher.
   */
  acceptToken(id: number): boolean {
    if (this.ended) return false;
    const vocab = this.grammar.vocab;
    if (vocab.eogIds.includes(id)) {
      if (!this.canEnd) return false;
      this.ended = true;
      return true;
    }
    const bytes = vocab.tokenBytes[id];
    if (bytes === undefined) return false;
    const next = this.grammar.advanceBytes(this.state, bytes);
    if (next < 0) return false;
    this.state = next;
    return true;
  }

  /** Advances over raw text bytes (e.g. a forced prefix); false when refused. */
  acceptBytes(bytes: Uint8Array): boolean {
    const next = this.grammar.advanceBytes(this.state, bytes);
    if (next < 0 || this.ended) return false;
    this.state = next;
    return true;
  }

  /** Sets bit i of `bits` (word i>>5, bit i&31) for every token allowed next; clears the rest. */
  fillNextTokenMask(bits: Uint32Array): void {
    if (this.ended) bits.fill(0);
    else this.grammar.fillMask(this.state, bits);
  }

  /** Whether the text so far is a complete match: an end token is allowed now. */
  get canEnd(): boolean {
    return !this.ended && this.grammar.canEnd(this.state);
  }

  /** Whether nothing may follow: an end token was accepted, or no byte can extend the match. */
  isTerminated(): boolean {
    return this.ended || this.grammar.isFinal(this.state);
  }
}

interface FlatGrammar {
  kind: Uint8Array;
  sets: Uint32Array;
  ruleAt: Int32Array;
  altStarts: number[][];
}

/** Lays every alternative out as consecutive positions ending in END, as llama.cpp does. */
function flatten(g: Grammar): FlatGrammar {
  const kinds: number[] = [];
  const sets: number[] = [];
  const ruleAt: number[] = [];
  const altStarts = g.rules.map((alts) =>
    alts.map((seq) => {
      const start = kinds.length;
      for (const el of [...seq, undefined]) {
        kinds.push(el === undefined ? END : el.kind === "bytes" ? BYTES : RULE);
        sets.push(...(el?.kind === "bytes" ? el.set : new Uint32Array(8)));
        ruleAt.push(el?.kind === "rule" ? el.rule : -1);
      }
      return start;
    })
  );
  return { kind: Uint8Array.from(kinds), sets: Uint32Array.from(sets), ruleAt: Int32Array.from(ruleAt), altStarts };
}
