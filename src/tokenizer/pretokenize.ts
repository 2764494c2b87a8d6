/**
 * Pre-tokenizers: the regex splits a byte-level BPE vocabulary applies before merging,
 * chosen by `tokenizer.ggml.pre`.
 *
 * Each pre-tokenizer is a chain of splitters; each splitter refines the pieces the one
 * before it produced, and never merges across them, the way llama.cpp's
 * `unicode_regex_split` does. Three patterns (GPT-2's, Llama 3's, Qwen 2's) are hand
 * written scanners, because that is what llama.cpp runs for them and because the exact
 * regex would need lookahead over Unicode classes; the rest run as JavaScript regexes
 * over a "collapsed" copy of the text in which every non-ASCII code point is replaced by
 * one character standing for its Unicode class, as llama.cpp's std::regex path does, so
 * that both split the same places.
 */
import { TokenizerError } from "../errors.ts";
import { CptFlag, cptFlags } from "./unicode.ts";

/**
 * Refines a split. `pieceLengths` are consecutive piece lengths in code points over
 * `cpts`; the result splits each piece further (its lengths sum to the same total).
 */
export type Splitter = (cpts: Uint32Array, collapsed: () => string, pieceLengths: readonly number[]) => number[];

/** What a `tokenizer.ggml.pre` name selects, with the flags llama.cpp ties to it. */
export interface PreTokenizer {
  /** The canonical name (as llama.cpp spells it). */
  readonly name: string;
  readonly splitters: readonly Splitter[];
  /** Detokenize removes spaces before `?!.,` and some apostrophes (`clean_up_tokenization_spaces`). */
  readonly cleanSpaces: boolean;
  /** A pre-token that is itself a vocabulary entry is emitted whole, without merging. */
  readonly ignoreMerges: boolean;
  /** BOS is added by default (before `tokenizer.ggml.add_bos_token` is read). */
  readonly addBosDefault: boolean;
}

const L = CptFlag.Letter;
const N = CptFlag.Number;
const WS = CptFlag.Whitespace;
// Set on positions inside the piece; outside it a scanner sees "no code point" (0).
const IN_RANGE = 1 << 8;
const OUT_OF_RANGE = -1;
const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;
const APOSTROPHE = 0x27;

/** Reads positions of one piece; everything outside [ini, end) reads as absent. */
class PieceView {
  constructor(readonly cpts: Uint32Array, readonly ini: number, readonly end: number) {}
  cpt(pos: number): number {
    return pos >= this.ini && pos < this.end ? (this.cpts[pos] as number) : OUT_OF_RANGE;
  }
  flags(pos: number): number {
    return pos >= this.ini && pos < this.end ? cptFlags(this.cpts[pos] as number) | IN_RANGE : 0;
  }
}

function lowerAscii(cpt: number): number {
  return cpt >= 0x41 && cpt <= 0x5a ? cpt + 0x20 : cpt;
}

/**
 * Length of an English contraction (`'s 't 're 've 'm 'll 'd`) at `pos`, or 0.
 * `caseInsensitive` is the `(?i:...)` of the Llama 3 and Qwen 2 patterns.
 */
function contractionLength(v: PieceView, pos: number, caseInsensitive: boolean): number {
  if (v.cpt(pos) !== APOSTROPHE || pos + 1 >= v.end) return 0;
  const fold = caseInsensitive ? lowerAscii : (c: number) => c;
  const next = fold(v.cpt(pos + 1));
  if (next === 0x73 || next === 0x74 || next === 0x6d || next === 0x64) return 2; // s t m d
  if (pos + 2 < v.end) {
    const next2 = fold(v.cpt(pos + 2));
    if ((next === 0x72 && next2 === 0x65) || (next === 0x76 && next2 === 0x65) || (next === 0x6c && next2 === 0x6c)) {
      return 3; // re ve ll
    }
  }
  return 0;
}

/** Runs `scan` over every piece, collecting the sub-piece lengths it ends. */
function scanPieces(
  cpts: Uint32Array,
  pieceLengths: readonly number[],
  scan: (v: PieceView, emit: (end: number) => number) => void,
): number[] {
  const out: number[] = [];
  let start = 0;
  for (const len of pieceLengths) {
    const v = new PieceView(cpts, start, start + len);
    let prevEnd = start;
    scan(v, (end: number): number => {
      const n = end - prevEnd;
      if (n > 0) out.push(n);
      prevEnd = end;
      return n;
    });
    start += len;
  }
  return out;
}

/** GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` */
export const splitGpt2: Splitter = (cpts, _collapsed, pieceLengths) =>
  scanPieces(cpts, pieceLengths, (v, emit) => {
    for (let pos = v.ini; pos < v.end;) {
      const cpt = v.cpt(pos);
      const contraction = contractionLength(v, pos, false);
      if (contraction > 0) {
        pos += emit(pos + contraction);
        continue;
      }
      // An optional leading ASCII space, then a run of one class.
      let f2 = cpt === SPACE ? v.flags(pos + 1) : v.flags(pos);
      if (f2 & L) {
        if (cpt === SPACE) pos++;
        while (f2 & L) f2 = v.flags(++pos);
        emit(pos);
        continue;
      }
      if (f2 & N) {
        if (cpt === SPACE) pos++;
        while (f2 & N) f2 = v.flags(++pos);
        emit(pos);
        continue;
      }
      if (!(f2 & (WS | L | N)) && f2 & IN_RANGE) {
        if (cpt === SPACE) pos++;
        while (!(f2 & (WS | L | N)) && f2 & IN_RANGE) f2 = v.flags(++pos);
        emit(pos);
        continue;
      }
      pos = whitespaceRun(v, pos, false, emit);
    }
  });

/**
 * `\s*[\r\n]+` (when `newlines`), then `\s+(?!\S)`, then `\s+` at `pos`; a code point
 * that matches nothing becomes a piece of its own. Returns the next position.
 */
function whitespaceRun(v: PieceView, pos: number, newlines: boolean, emit: (end: number) => number): number {
  let count = 0;
  let lastNewlineEnd = 0;
  while (v.flags(pos + count) & WS) {
    const c = v.cpt(pos + count);
    if (c === CR || c === LF) lastNewlineEnd = pos + count + 1;
    count++;
  }
  if (newlines && lastNewlineEnd > 0) {
    emit(lastNewlineEnd);
    return lastNewlineEnd;
  }
  // A run followed by a non-space gives its last space to the next piece (` word`).
  if (count > 1 && v.cpt(pos + count) !== OUT_OF_RANGE) {
    emit(pos + count - 1);
    return pos + count - 1;
  }
  if (count > 0) {
    emit(pos + count);
    return pos + count;
  }
  emit(pos + 1);
  return pos + 1;
}

/**
 * Llama 3 (`maxDigits` 3) and Qwen 2 (`maxDigits` 1):
 * `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
 */
function llama3Like(maxDigits: number): Splitter {
  return (cpts, _collapsed, pieceLengths) =>
    scanPieces(cpts, pieceLengths, (v, emit) => {
      for (let pos = v.ini; pos < v.end;) {
        const cpt = v.cpt(pos);
        const flags = v.flags(pos);
        const contraction = contractionLength(v, pos, true);
        if (contraction > 0) {
          pos += emit(pos + contraction);
          continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (!(cpt === CR || cpt === LF || flags & N) && (flags & L || v.flags(pos + 1) & L)) {
          pos++;
          while (v.flags(pos) & L) pos++;
          emit(pos);
          continue;
        }
        // \p{N}{1,maxDigits}
        if (flags & N) {
          let groupStart = pos;
          while (v.flags(pos) & N) {
            if (++pos - groupStart >= maxDigits) {
              emit(pos);
              groupStart = pos;
            }
          }
          emit(pos);
          continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let f2 = cpt === SPACE ? v.flags(pos + 1) : flags;
        if (!(f2 & (WS | L | N)) && flags & IN_RANGE) {
          if (cpt === SPACE) pos++;
          while (!(f2 & (WS | L | N)) && f2 & IN_RANGE) f2 = v.flags(++pos);
          let c2 = v.cpt(pos);
          while (c2 === CR || c2 === LF) c2 = v.cpt(++pos);
          emit(pos);
          continue;
        }
        pos = whitespaceRun(v, pos, true, emit);
      }
    });
}

/** Llama 3's pattern (digits in groups of up to three). */
export const splitLlama3: Splitter = llama3Like(3);
/** Qwen 2's pattern (every digit alone). */
export const splitQwen2: Splitter = llama3Like(1);

// The characters that stand for a non-ASCII code point of each class in collapsed text.
const COLLAPSED_OTHER = "\u00d0";
const COLLAPSED_NUMBER = "\u00d1";
const COLLAPSED_LETTER = "\u00d2";
const COLLAPSED_PUNCT = "\u00d3";
const COLLAPSED_MARK = "\u00d4";
const COLLAPSED_SYMBOL = "\u00d5";
// Non-ASCII whitespace collapses to vertical tab, which every `\s` matches.
const COLLAPSED_SPACE = "\u000b";

/**
 * The text with each non-ASCII code point replaced by its class character; ASCII stays.
 * One UTF-16 unit per code point, so offsets in it are code-point offsets.
 */
export function collapseText(cpts: Uint32Array): string {
  const parts: string[] = [];
  let chunk = "";
  for (let i = 0; i < cpts.length; i++) {
    const c = cpts[i] as number;
    if (c < 0x80) {
      chunk += String.fromCharCode(c);
    } else {
      const f = cptFlags(c);
      chunk += f & WS
        ? COLLAPSED_SPACE
        : f & N
        ? COLLAPSED_NUMBER
        : f & L
        ? COLLAPSED_LETTER
        : f & CptFlag.Punctuation
        ? COLLAPSED_PUNCT
        : f & CptFlag.Mark
        ? COLLAPSED_MARK
        : f & CptFlag.Symbol
        ? COLLAPSED_SYMBOL
        : COLLAPSED_OTHER;
    }
    if (chunk.length >= 8192) {
      parts.push(chunk);
      chunk = "";
    }
  }
  parts.push(chunk);
  return parts.join("");
}

// Each class, for collapsed text: its stand-in character plus its ASCII members.
const CLASS_MEMBERS: Readonly<Record<string, string>> = {
  N: `${COLLAPSED_NUMBER}0-9`,
  L: `${COLLAPSED_LETTER}A-Za-z`,
  Lu: `${COLLAPSED_LETTER}A-Za-z`,
  Ll: `${COLLAPSED_LETTER}A-Za-z`,
  Lt: `${COLLAPSED_LETTER}A-Za-z`,
  Lm: `${COLLAPSED_LETTER}A-Za-z`,
  Lo: `${COLLAPSED_LETTER}A-Za-z`,
  P: `${COLLAPSED_PUNCT}!-#%-*,-/:;?@\\[-\\]_{}`,
  M: COLLAPSED_MARK,
  S: `${COLLAPSED_SYMBOL}$+<->^\`|~`,
};

/**
 * Rewrites a pattern that uses `\p{N}`-style classes into one over collapsed text: a
 * class outside brackets becomes a bracket of its members, one inside brackets adds its
 * members there.
 */
export function collapsePattern(pattern: string): RegExp {
  let out = "";
  let inside = false;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch === "\\" && pattern[i + 1] === "p" && pattern[i + 2] === "{") {
      const close = pattern.indexOf("}", i + 3);
      const name = close > 0 ? pattern.slice(i + 3, close) : "";
      const members = CLASS_MEMBERS[name];
      if (members === undefined) {
        throw new TokenizerError("UNSUPPORTED_PRE_TOKENIZER", `pre-tokenizer pattern uses \\p{${name}}, which is not supported`);
      }
      out += inside ? members : `[${members}]`;
      i = close;
      continue;
    }
    if (ch === "\\") {
      out += ch + (pattern[i + 1] ?? "");
      i++;
      continue;
    }
    if (ch === "[") inside = true;
    else if (ch === "]") inside = false;
    out += ch;
  }
  return new RegExp(out, "g");
}

/**
 * A splitter from a regex: within each piece, every match becomes a piece and so does
 * every unmatched stretch between matches (llama.cpp keeps those too).
 */
export function regexSplitter(pattern: string): Splitter {
  const re = collapsePattern(pattern);
  return (_cpts, collapsed, pieceLengths) => {
    const text = collapsed();
    const out: number[] = [];
    let start = 0;
    for (const len of pieceLengths) {
      const piece = text.slice(start, start + len);
      re.lastIndex = 0;
      let last = 0;
      for (let m = re.exec(piece); m !== null; m = re.exec(piece)) {
        if (m[0].length === 0) {
          re.lastIndex++;
          continue;
        }
        if (m.index > last) out.push(m.index - last);
        out.push(m[0].length);
        last = m.index + m[0].length;
      }
      if (last < len) out.push(len - last);
      start += len;
    }
    return out;
  };
}

interface PreTokenizerFlags {
  cleanSpaces?: boolean;
  ignoreMerges?: boolean;
  addBosDefault?: boolean;
}

function preTokenizer(name: string, splitters: readonly Splitter[], flags: PreTokenizerFlags = {}): PreTokenizer {
  return {
    name,
    splitters,
    cleanSpaces: flags.cleanSpaces ?? true,
    ignoreMerges: flags.ignoreMerges ?? false,
    addBosDefault: flags.addBosDefault ?? false,
  };
}

const DEFAULT = preTokenizer("default", [
  regexSplitter("[\\p{P}\\$\\+<=>\\^~\\|]+"),
  splitGpt2,
  regexSplitter("\\p{N}+"),
  regexSplitter("[0-9][0-9][0-9]"),
]);
const LLAMA3 = preTokenizer("llama-bpe", [splitLlama3], { ignoreMerges: true, addBosDefault: true });
const LLAMA3_PLAIN = preTokenizer("dbrx", [splitLlama3]);
const GPT2 = preTokenizer("gpt-2", [splitGpt2]);
const QWEN2 = preTokenizer("qwen2", [splitQwen2], { cleanSpaces: false });
const QWEN2_CLEAN = preTokenizer("stablelm2", [splitQwen2]);
const SMOLLM = preTokenizer("smollm", [regexSplitter("\\p{N}"), splitGpt2], { cleanSpaces: false });
const STARCODER = preTokenizer("starcoder", [regexSplitter("\\p{N}"), splitGpt2]);

// Names as llama.cpp's llama-vocab.cpp groups them (only groups whose patterns are here).
const BY_NAME: ReadonlyMap<string, PreTokenizer> = new Map<string, PreTokenizer>([
  ["default", DEFAULT],
  ...["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"].map(
    (n): [string, PreTokenizer] => [n, { ...LLAMA3, name: n }],
  ),
  ...["dbrx", "smaug-bpe"].map((n): [string, PreTokenizer] => [n, { ...LLAMA3_PLAIN, name: n }]),
  // "gpt2" is not a name llama.cpp accepts; taken here as the obvious alias of "gpt-2".
  ...["gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "a.x-4.0", "mellum", "gigachat"].map(
    (n): [string, PreTokenizer] => [n, { ...GPT2, name: n }],
  ),
  ...["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan"].map(
    (n): [string, PreTokenizer] => [n, { ...QWEN2, name: n }],
  ),
  ...["stablelm2", "megrez"].map((n): [string, PreTokenizer] => [n, { ...QWEN2_CLEAN, name: n }]),
  ["smollm", SMOLLM],
  ["command-r", { ...SMOLLM, name: "command-r" }],
  ...["starcoder", "refact", "codeshell", "exaone", "minerva-7b"].map(
    (n): [string, PreTokenizer] => [n, { ...STARCODER, name: n }],
  ),
]);

/**
 * The pre-tokenizer a `tokenizer.ggml.pre` value names; a missing value means
 * "default" (as in llama.cpp). Throws `TokenizerError` (`UNSUPPORTED_PRE_TOKENIZER`)
 * for a name this runtime does not know.
 */
export function preTokenizerByName(name: string | undefined): PreTokenizer {
  const found = BY_NAME.get(name === undefined || name === "" ? "default" : name);
  if (!found) {
    throw new TokenizerError(
      "UNSUPPORTED_PRE_TOKENIZER",
      `tokenizer.ggml.pre = "${name}" is not a supported pre-tokenizer (known: ${[...BY_NAME.keys()].join(", ")})`,
    );
  }
  return found;
}

/** The names `preTokenizerByName` accepts. */
export function supportedPreTokenizers(): string[] {
  return [...BY_NAME.keys()];
}

/** Splits code points into pre-token lengths with a pre-tokenizer's chain. */
export function preTokenize(pre: PreTokenizer, cpts: Uint32Array): number[] {
  let lengths: number[] = cpts.length > 0 ? [cpts.length] : [];
  let collapsedText: string | undefined;
  const collapsed = (): string => (collapsedText ??= collapseText(cpts));
  for (const split of pre.splitters) lengths = split(cpts, collapsed, lengths);
  return lengths;
}
