/**
 * Token ids back to text, following llama.cpp's `token_to_piece` and `detokenize`:
 * control tokens render only when asked, byte tokens give one byte, `▁` (llama kind) or
 * the byte alphabet (gpt2 kind) turn back into UTF-8, and pieces are joined as bytes, so
 * a character split over several tokens comes out whole.
 */
import { SPACE_MARKER } from "./spm.ts";
import { CHAR_TO_BYTE, utf8 } from "./unicode.ts";
import { TokenAttr, type Vocab } from "./vocab.ts";

const EMPTY = new Uint8Array(0);
const SPACE = 0x20;
const APOSTROPHE = 0x27;

/** Per-token byte pieces of a vocabulary, computed on first use. */
export class PieceTable {
  private readonly cache: (Uint8Array | undefined)[];

  constructor(private readonly vocab: Vocab) {
    this.cache = new Array<Uint8Array | undefined>(vocab.tokens.length);
  }

  /**
   * The bytes token `id` stands for. Control and unknown tokens give their text when
   * `special`, else nothing; user-defined tokens always give their text.
   */
  bytes(id: number, special: boolean): Uint8Array {
    const attr = this.vocab.attrs[id];
    if (attr === undefined) return EMPTY;
    if (!special && attr & (TokenAttr.Control | TokenAttr.Unknown)) return EMPTY;
    let piece = this.cache[id];
    if (piece === undefined) {
      piece = this.compute(id, attr);
      this.cache[id] = piece;
    }
    return piece;
  }

  private compute(id: number, attr: number): Uint8Array {
    const text = this.vocab.tokens[id] as string;
    if (attr & (TokenAttr.Control | TokenAttr.Unknown | TokenAttr.UserDefined)) return utf8(text);
    if (attr & TokenAttr.Normal) {
      return this.vocab.kind === "llama" ? utf8(text.replaceAll(SPACE_MARKER, " ")) : byteLevelDecode(text);
    }
    if (attr & TokenAttr.Byte) return Uint8Array.of(parseInt(text.slice(3, 5), 16) & 0xff);
    return EMPTY; // unused and undefined tokens render as nothing
  }
}

/**
 * The bytes a byte-alphabet string stands for. A character outside the alphabet comes
 * out as `[UNK_BYTE_0x..<text>]`, llama.cpp's marker for it.
 */
function byteLevelDecode(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b !== undefined) {
      out.push(b);
      continue;
    }
    const hex = [...utf8(ch)].map((x) => x.toString(16).padStart(2, "0")).join("");
    out.push(...utf8(`[UNK_BYTE_0x${hex}${text}]`));
  }
  return Uint8Array.from(out);
}

/** Options of `detokenizeBytes`, as llama.cpp's `llama_detokenize` takes them. */
export interface DetokenizeOptions {
  /** Drop a leading BOS and trailing EOS where the model adds them. */
  readonly removeSpecial: boolean;
  /** Render control tokens as their text. */
  readonly unparseSpecial: boolean;
}

/** The UTF-8 bytes of `ids` joined, with llama.cpp's leading-space and cleanup rules. */
export function detokenizeBytes(vocab: Vocab, pieces: PieceTable, ids: readonly number[], opts: DetokenizeOptions): Uint8Array {
  let list = ids;
  // SentencePiece's dummy prefix comes off the first piece, unless a BOS was removed.
  let removeSpace = vocab.addSpacePrefix;
  if (opts.removeSpecial && vocab.addBos && list.length > 0 && list[0] === vocab.bos) {
    removeSpace = false;
    list = list.slice(1);
  }
  if (opts.removeSpecial && vocab.addEos && list.length > 0 && list[list.length - 1] === vocab.eos) {
    list = list.slice(0, -1);
  }
  const parts: Uint8Array[] = [];
  let total = 0;
  for (const id of list) {
    let piece = pieces.bytes(id, opts.unparseSpecial);
    if (removeSpace && piece.length > 0 && piece[0] === SPACE) piece = piece.subarray(1);
    removeSpace = false;
    parts.push(piece);
    total += piece.length;
  }
  const joined = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    joined.set(p, at);
    at += p.length;
  }
  return vocab.cleanSpaces ? cleanSpaces(joined) : joined;
}

/**
 * `clean_up_tokenization_spaces` in llama.cpp's three passes: no space before `?!.,`;
 * `a ' b` loses the spaces around the apostrophe; `'s 'm 're 've` join the word before.
 */
export function cleanSpaces(input: Uint8Array): Uint8Array {
  const isStop = (x: number): boolean => x === 0x3f || x === 0x21 || x === 0x2e || x === 0x2c;
  let src = Array.from(input);
  if (src.length === 0) return input;

  let out = [src[0] as number];
  for (let i = 1; i < src.length; i++) {
    const x = src[i] as number;
    if (src[i - 1] === SPACE && isStop(x)) out.pop();
    out.push(x);
  }

  // The space after a lone apostrophe is skipped, and a NUL left in its place so that
  // the next position no longer sees a space before it (llama.cpp edits in place).
  src = out;
  out = [src[0] as number];
  for (let i = 1; i < src.length; i++) {
    const x = src[i] as number;
    if (x === APOSTROPHE && i + 1 < src.length && src[i - 1] === SPACE && src[i + 1] === SPACE) {
      out.pop();
      src[i + 1] = 0;
      i++;
    }
    out.push(x);
  }

  src = out;
  out = [src[0] as number];
  const n = src.length;
  for (let i = 1; i < n; i++) {
    const x = src[i] as number;
    if (src[i - 1] === SPACE && x === APOSTROPHE && i + 1 < n) {
      const x1 = src[i + 1] as number;
      if (x1 === 0x73 || x1 === 0x6d) {
        out.pop(); // " 's", " 'm"
      } else if (i + 2 < n) {
        const x2 = src[i + 2] as number;
        if ((x1 === 0x72 && x2 === 0x65) || (x1 === 0x76 && x2 === 0x65)) out.pop(); // " 're", " 've"
      }
    }
    out.push(x);
  }
  return Uint8Array.from(out);
}
