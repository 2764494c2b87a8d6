/**
 * Code-point classes and byte mappings shared by the tokenizers.
 *
 * llama.cpp classifies code points with its own Unicode tables; the classes here come
 * from the JavaScript engine's `\p{...}` support instead. Both follow the Unicode
 * general categories, so they agree except for code points assigned in one Unicode
 * version and not the other.
 */

/** The class bits of one code point (a subset of llama.cpp's `unicode_cpt_flags`). */
export const CptFlag = {
  Number: 1 << 0,
  Letter: 1 << 1,
  Punctuation: 1 << 2,
  Mark: 1 << 3,
  Symbol: 1 << 4,
  Whitespace: 1 << 5,
} as const;

// Bit 15 marks a table entry as computed, so a zero entry means "not looked at yet".
const COMPUTED = 1 << 15;
const flagTable = new Uint16Array(0x110000);

const RE_LETTER = /^\p{L}$/u;
const RE_NUMBER = /^\p{N}$/u;
const RE_PUNCT = /^\p{P}$/u;
const RE_MARK = /^\p{M}$/u;
const RE_SYMBOL = /^\p{S}$/u;

/**
 * The whitespace set tokenizers split on. It is the Unicode White_Space property
 * (JavaScript's `\s` minus U+FEFF, plus U+0085), which is what llama.cpp uses.
 */
function isWhitespaceCpt(cpt: number): boolean {
  if (cpt <= 0x20) return cpt === 0x20 || (cpt >= 0x09 && cpt <= 0x0d);
  return cpt === 0x85 || cpt === 0xa0 || cpt === 0x1680 || (cpt >= 0x2000 && cpt <= 0x200a) ||
    cpt === 0x2028 || cpt === 0x2029 || cpt === 0x202f || cpt === 0x205f || cpt === 0x3000;
}

/** The class bits of a code point; computed once per code point, then looked up. */
export function cptFlags(cpt: number): number {
  const cached = flagTable[cpt];
  if (cached !== undefined && cached !== 0) return cached & ~COMPUTED;
  const ch = String.fromCodePoint(cpt);
  let flags = 0;
  if (RE_LETTER.test(ch)) flags |= CptFlag.Letter;
  else if (RE_NUMBER.test(ch)) flags |= CptFlag.Number;
  else if (RE_PUNCT.test(ch)) flags |= CptFlag.Punctuation;
  else if (RE_MARK.test(ch)) flags |= CptFlag.Mark;
  else if (RE_SYMBOL.test(ch)) flags |= CptFlag.Symbol;
  if (isWhitespaceCpt(cpt)) flags |= CptFlag.Whitespace;
  flagTable[cpt] = flags | COMPUTED;
  return flags;
}

/**
 * The code points of a string, as llama.cpp sees the UTF-8 a JavaScript string turns
 * into: a lone surrogate becomes U+FFFD (what `TextEncoder` and Node's UTF-8
 * conversion write for it).
 */
export function codePointsOf(text: string): Uint32Array {
  const out = new Uint32Array(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out[n++] = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        continue;
      }
    }
    out[n++] = c >= 0xd800 && c <= 0xdfff ? 0xfffd : c;
  }
  return out.subarray(0, n);
}

/** The string of code points `cpts[start, end)`. */
export function stringFromCodePoints(cpts: Uint32Array, start: number, end: number): string {
  let s = "";
  // Chunked: String.fromCodePoint with a huge spread would overflow the call stack.
  for (let i = start; i < end; i += 4096) {
    s += String.fromCodePoint(...cpts.subarray(i, Math.min(end, i + 4096)));
  }
  return s;
}

/**
 * GPT-2's byte ↔ character table: printable Latin-1 bytes map to themselves, the other
 * 68 bytes to U+0100 and up in byte order, so every byte has a visible character.
 */
function buildByteTables(): { byteToChar: string[]; charToByte: Map<string, number> } {
  const byteToChar: string[] = new Array<string>(256);
  const charToByte = new Map<string, number>();
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const ch = String.fromCodePoint(printable(b) ? b : next++);
    byteToChar[b] = ch;
    charToByte.set(ch, b);
  }
  return { byteToChar, charToByte };
}

const BYTE_TABLES = buildByteTables();

/** The byte-level character of each byte (GPT-2's `bytes_to_unicode`). */
export const BYTE_TO_CHAR: readonly string[] = BYTE_TABLES.byteToChar;

/** The byte a byte-level character stands for. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = BYTE_TABLES.charToByte;

const utf8Encoder = new TextEncoder();

/** UTF-8 bytes of a string (lone surrogates become EF BF BD). */
export function utf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/** A string in GPT-2's byte-level alphabet: one character per UTF-8 byte of `text`. */
export function byteLevelEncode(text: string): string {
  let ascii = true;
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  let out = "";
  if (ascii) {
    for (let i = 0; i < text.length; i++) out += BYTE_TO_CHAR[text.charCodeAt(i)];
    return out;
  }
  for (const b of utf8(text)) out += BYTE_TO_CHAR[b];
  return out;
}
