/**
 * Strings that exercise tokenizers where they differ: scripts, emoji, code, whitespace
 * runs, digits, contractions, punctuation next to spaces, and special-token text.
 */
import { SYNTHETIC_CORPUS } from "../../../src/tokenizer/synthetic-corpus.ts";

const FIXED: readonly string[] = [
  "Hello world",
  "hello",
  " leading space",
  "trailing space ",
  "  double  spaces  ",
  "   ",
  " ",
  "\n",
  " \n ",
  "\t\ttabs\tand\nnewlines\n\n\n",
  "\r\n windows\r\nline endings\r\n",
  "x \n\n  y",
  "a    b     c",
  "end   ",
  "It's, we'll, they're, I'd, you've, I'm, DON'T, SHE'S, We'Ll",
  "'s 't 're 've 'm 'll 'd",
  "café naïve résumé Ünïcödé façade Ærøskøbing",
  "灯塔看守人每天晚上都在日志里写字。",
  "東京の天気は晴れです。ありがとう",
  "한국어 텍스트입니다",
  "Смотритель маяка каждый вечер писал",
  "Ο φύλακας του φάρου",
  "مرحبا بالعالم",
  "नमस्ते दुनिया",
  "😀🎉 🚀 ❤️ 👍🏽 🇫🇷 family: 👨‍👩‍👧",
  "function f(x) {\n  return x * 2; // comment\n}\n",
  "def g():\n    pass\n\n\nclass A:\n\tdef h(self): return 1\n",
  "if (a<=b && c!=d) { x++; } else { y -= 0x1F; }",
  "1234567890 3.14159 1,000,000 0x1F 2024-11-05",
  "12345678901234567890123",
  "a1b22c333d4444",
  "Hello!!! What?? ... --- ''' \"quoted\" (paren) [bracket] {brace}",
  "a , b . c ! d ? e 's f ' g 're h 've i 'm",
  "don ' t stop , ok ?",
  "naïve — “smart quotes” … ©®™ ½ ² №",
  "e\u0301 combining, a\u200bb zero width, a\u00a0b nbsp, a\u3000b ideographic space, a\u0085b next line",
  "$100 + 5% = ~105; a^b | c ` d \\ e",
  "lone \ud83d surrogate \udc00 halves",
  "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
  "text<|im_end|>more",
  "<think>reasoning</think>answer",
  "<|endoftext|>",
  "<|im_start|><|im_end|>",
  " <|im_start|> spaced <|im_end|> ",
  "<|im_start", "im_end|>",
  "<|extra_3|> and <|extra_12|>",
  "<unk> <s> </s> <0x41>",
  "<s>sentence</s>",
  "The quick brown fox jumps over the lazy dog.",
  SYNTHETIC_CORPUS.slice(0, 1500),
  SYNTHETIC_CORPUS,
];

// Characters random strings are drawn from: every class the pre-tokenizers treat apart.
const POOL = [
  ..."abcXYZ019 '\n\t\r.,!?-_()<>|{}$+=^~`\\\"",
  "é", "ß", "ü", "Ж", "я", "λ", "灯", "塔", "の", "한", "ع", "ह", "\u0301", "😀", "🚀", "\u00a0", "\u3000", "\u2028",
  "²", "½", "—", "…", "©", "’", "<|im_end|>", "<|im_start|>", "<think>", "'s", "'LL", "  ", "\n\n",
];

/** `count` seeded random strings over `POOL` (xorshift32: reproducible everywhere). */
export function randomStrings(count: number, seed: number): string[] {
  let s = seed;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const len = 1 + Math.floor(next() * 40);
    let text = "";
    for (let j = 0; j < len; j++) text += POOL[Math.floor(next() * POOL.length)];
    out.push(text);
  }
  return out;
}

/** The strings every tokenizer is checked on. */
export const TOKENIZER_CORPUS: readonly string[] = [...FIXED, ...randomStrings(60, 0x9e3779b9)];
