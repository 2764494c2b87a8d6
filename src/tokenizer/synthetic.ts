/**
 * Synthetic tokenizers for test models: real, working vocabularies of any size, learned
 * by BPE from a built-in text (`SYNTHETIC_CORPUS`), written as the `tokenizer.*` GGUF
 * metadata llama.cpp loads.
 *
 * - `gpt2` kind: the 256 byte-alphabet characters, the learned merges (at most
 *   `MAX_MERGES`), special tokens, then `<|extra_N|>` control tokens up to the size.
 * - `llama` kind: `<unk>`, `<s>`, `</s>`, the 256 `<0xNN>` byte tokens, the most frequent
 *   characters, the learned merges scored by order, special tokens, then padding.
 *
 * Both include ChatML's `<|im_start|>` / `<|im_end|>` and a ChatML chat template by
 * default. Training is memoized per kind and pre-tokenizer, so every model size shares
 * one run.
 */
import { InvalidArgumentError } from "../errors.ts";
import { type MetaEntry, meta } from "../gguf/writer.ts";
import { preTokenize, preTokenizerByName } from "./pretokenize.ts";
import { SPACE_MARKER } from "./spm.ts";
import { SYNTHETIC_CORPUS } from "./synthetic-corpus.ts";
import { byteLevelEncode, BYTE_TO_CHAR, codePointsOf, stringFromCodePoints } from "./unicode.ts";
import { TokenType } from "./vocab.ts";

/** Options of `syntheticTokenizerMetadata`. */
export interface SyntheticTokenizerOptions {
  /** `tokenizer.ggml.pre` of a gpt2-kind vocabulary (default "gpt-2"; "gpt2" is written as "gpt-2"). */
  readonly pre?: string;
  /** `tokenizer.chat_template` (default ChatML); an empty string leaves the key out. */
  readonly chatTemplate?: string;
  /**
   * `llama` kind: control tokens after ChatML's (a family's chat markers, such as Phi-3's
   * `<|user|>`, `<|end|>`); `eos` names the end-of-sequence token among them (default `</s>`).
   */
  readonly specials?: readonly string[];
  readonly eos?: string;
}

/** Most merges learned: enough for non-trivial splits, few enough to train in well under a second. */
export const MAX_MERGES = 2000;
/** Smallest vocabulary accepted: bytes, specials, and room for some merges. */
export const MIN_SYNTHETIC_VOCAB = 320;

/** The default chat template: ChatML, which llama.cpp also recognizes by its markers. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

interface SpecialToken {
  readonly text: string;
  readonly type: number;
}

const GPT2_SPECIALS: readonly SpecialToken[] = [
  { text: "<|endoftext|>", type: TokenType.Control },
  { text: "<|im_start|>", type: TokenType.Control },
  { text: "<|im_end|>", type: TokenType.Control },
  // Not special to the model, but split out of text whole (as Qwen 3 marks them).
  { text: "<think>", type: TokenType.UserDefined },
  { text: "</think>", type: TokenType.UserDefined },
];
const LLAMA_SPECIALS: readonly SpecialToken[] = GPT2_SPECIALS.slice(1);

/** One learned merge: the pair and what it makes. */
interface Merge {
  readonly left: string;
  readonly right: string;
}

/**
 * Learns up to `maxMerges` BPE merges from word counts (words as symbol lists).
 * The most frequent adjacent pair merges first; ties go to the smaller pair text, so
 * training is deterministic.
 */
export function learnMerges(words: ReadonlyMap<string[], number>, maxMerges: number): Merge[] {
  const types = [...words].map(([symbols, count]) => ({ symbols: [...symbols], count }));
  const SEP = "\u0000";
  const pairCount = new Map<string, number>();
  const pairTypes = new Map<string, Set<number>>();
  const addPairs = (t: number, sign: number): void => {
    const { symbols, count } = types[t] as { symbols: string[]; count: number };
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = symbols[i] + SEP + symbols[i + 1];
      const c = (pairCount.get(key) ?? 0) + sign * count;
      if (c === 0) pairCount.delete(key);
      else pairCount.set(key, c);
      if (sign > 0) {
        let set = pairTypes.get(key);
        if (!set) pairTypes.set(key, (set = new Set()));
        set.add(t);
      }
    }
  };
  types.forEach((_, t) => addPairs(t, 1));

  const merges: Merge[] = [];
  while (merges.length < maxMerges) {
    let best: string | undefined;
    let bestCount = 0;
    for (const [key, c] of pairCount) {
      if (c > bestCount || (c === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = c;
      }
    }
    if (best === undefined) break;
    const [left, right] = best.split(SEP) as [string, string];
    merges.push({ left, right });
    for (const t of pairTypes.get(best) ?? []) {
      const type = types[t] as { symbols: string[]; count: number };
      addPairs(t, -1);
      const merged: string[] = [];
      for (let i = 0; i < type.symbols.length; i++) {
        if (type.symbols[i] === left && type.symbols[i + 1] === right) {
          merged.push(left + right);
          i++;
        } else {
          merged.push(type.symbols[i] as string);
        }
      }
      type.symbols = merged;
      addPairs(t, 1);
    }
    pairTypes.delete(best);
  }
  return merges;
}

function countWords(words: Iterable<string>, split: (w: string) => string[]): Map<string[], number> {
  const byText = new Map<string, number>();
  for (const w of words) if (w.length > 0) byText.set(w, (byText.get(w) ?? 0) + 1);
  const out = new Map<string[], number>();
  for (const [w, c] of [...byText].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) out.set(split(w), c);
  return out;
}

const trained = new Map<string, Merge[]>();

/** Merges of a gpt2-kind vocabulary: over byte-alphabet pre-tokens of the corpus. */
function gpt2Merges(pre: string): Merge[] {
  const key = `gpt2:${pre}`;
  let merges = trained.get(key);
  if (!merges) {
    const cpts = codePointsOf(SYNTHETIC_CORPUS);
    const words: string[] = [];
    let pos = 0;
    for (const n of preTokenize(preTokenizerByName(pre), cpts)) {
      words.push(byteLevelEncode(stringFromCodePoints(cpts, pos, pos + n)));
      pos += n;
    }
    merges = learnMerges(countWords(words, (w) => [...w]), MAX_MERGES);
    trained.set(key, merges);
  }
  return merges;
}

/** Merges of a llama-kind vocabulary: over `▁word` pieces, as SentencePiece splits text. */
function llamaMerges(): Merge[] {
  let merges = trained.get("llama");
  if (!merges) {
    const words = SYNTHETIC_CORPUS.split(" ").map((w) => SPACE_MARKER + w);
    merges = learnMerges(countWords(words, (w) => [...w]), MAX_MERGES);
    trained.set("llama", merges);
  }
  return merges;
}

/** Characters of the corpus, most frequent first (ties by code point). */
function corpusCharacters(): string[] {
  const counts = new Map<string, number>();
  counts.set(SPACE_MARKER, SYNTHETIC_CORPUS.split(" ").length);
  for (const ch of SYNTHETIC_CORPUS) if (ch !== " ") counts.set(ch, (counts.get(ch) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0].codePointAt(0) as number) - (b[0].codePointAt(0) as number)).map(([c]) => c);
}

/** Vocabulary under construction: texts, types and scores kept in step, texts unique. */
class VocabBuilder {
  readonly texts: string[] = [];
  readonly types: number[] = [];
  readonly scores: number[] = [];
  private readonly seen = new Set<string>();

  add(text: string, type: number, score = 0): boolean {
    if (this.seen.has(text)) return false;
    this.seen.add(text);
    this.texts.push(text);
    this.types.push(type);
    this.scores.push(score);
    return true;
  }

  has(text: string): boolean {
    return this.seen.has(text);
  }

  idOf(text: string): number {
    return this.texts.indexOf(text);
  }

  /** Fills up to `size` with control placeholders. */
  pad(size: number): void {
    for (let i = 0; this.texts.length < size; i++) this.add(`<|extra_${i}|>`, TokenType.Control);
  }
}

/**
 * The `tokenizer.*` metadata of a synthetic vocabulary of exactly `vocabSize` tokens,
 * as `[key, entry]` pairs for the GGUF writer. Throws `InvalidArgumentError` for a
 * size below `MIN_SYNTHETIC_VOCAB` or a pre-tokenizer this runtime does not know.
 */
export function syntheticTokenizerMetadata(
  kind: "gpt2" | "llama",
  vocabSize: number,
  options: SyntheticTokenizerOptions = {},
): [string, MetaEntry][] {
  if (!Number.isInteger(vocabSize) || vocabSize < MIN_SYNTHETIC_VOCAB) {
    throw new InvalidArgumentError("vocabSize", `${vocabSize}: a synthetic vocabulary needs at least ${MIN_SYNTHETIC_VOCAB} tokens`);
  }
  const entries = kind === "gpt2" ? gpt2Entries(vocabSize, options.pre === "gpt2" ? "gpt-2" : options.pre ?? "gpt-2") : llamaEntries(vocabSize, options);
  const template = options.chatTemplate ?? CHATML_TEMPLATE;
  if (template !== "") entries.push(["tokenizer.chat_template", meta.str(template)]);
  return entries;
}

function gpt2Entries(vocabSize: number, pre: string): [string, MetaEntry][] {
  const preTokenizer = preTokenizerByName(pre);
  const v = new VocabBuilder();
  for (let b = 0; b < 256; b++) v.add(BYTE_TO_CHAR[b] as string, TokenType.Normal);
  const budget = vocabSize - v.texts.length - GPT2_SPECIALS.length;
  const merges: string[] = [];
  for (const m of gpt2Merges(pre)) {
    const made = m.left + m.right;
    // A merge whose result is already a token adds no token; stop before overflowing.
    if (!v.has(made) && v.texts.length - 256 >= budget) break;
    v.add(made, TokenType.Normal);
    merges.push(`${m.left} ${m.right}`);
  }
  for (const s of GPT2_SPECIALS) v.add(s.text, s.type);
  v.pad(vocabSize);
  const endOfText = v.idOf("<|endoftext|>");
  return [
    ["tokenizer.ggml.model", meta.str("gpt2")],
    ["tokenizer.ggml.pre", meta.str(pre)],
    ["tokenizer.ggml.tokens", meta.strs(v.texts)],
    ["tokenizer.ggml.token_type", meta.i32s(v.types)],
    ["tokenizer.ggml.merges", meta.strs(merges)],
    ["tokenizer.ggml.bos_token_id", meta.u32(endOfText)],
    ["tokenizer.ggml.eos_token_id", meta.u32(v.idOf("<|im_end|>"))],
    ["tokenizer.ggml.padding_token_id", meta.u32(endOfText)],
    // Written out, as converted models do; Llama 3's pre-tokenizer family starts with BOS.
    ["tokenizer.ggml.add_bos_token", meta.bool(preTokenizer.addBosDefault)],
    ["tokenizer.ggml.add_eos_token", meta.bool(false)],
  ];
}

function llamaEntries(vocabSize: number, options: SyntheticTokenizerOptions): [string, MetaEntry][] {
  const specials = [...LLAMA_SPECIALS, ...(options.specials ?? []).map((text) => ({ text, type: TokenType.Control }))];
  const v = new VocabBuilder();
  v.add("<unk>", TokenType.Unknown);
  v.add("<s>", TokenType.Control);
  v.add("</s>", TokenType.Control);
  for (let b = 0; b < 256; b++) v.add(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, TokenType.Byte);
  const budget = vocabSize - v.texts.length - specials.length;
  // Half the room for single characters (rarer ones fall back to bytes), half for merges.
  const chars = corpusCharacters().slice(0, Math.floor(budget / 2));
  const mergeRoom = budget - chars.length;
  let added = 0;
  for (const m of llamaMerges()) {
    if (added >= mergeRoom) break;
    // Earlier merges score higher, so llama.cpp applies them first.
    if (v.add(m.left + m.right, TokenType.Normal, -1 - added)) added++;
  }
  chars.forEach((c, i) => v.add(c, TokenType.Normal, -100_000 - i));
  for (const s of specials) v.add(s.text, s.type);
  v.pad(vocabSize);
  const eos = options.eos ?? "</s>";
  if (!v.has(eos)) throw new InvalidArgumentError("eos", `"${eos}" is not a token of the vocabulary (add it to specials)`);
  return [
    ["tokenizer.ggml.model", meta.str("llama")],
    ["tokenizer.ggml.tokens", meta.strs(v.texts)],
    ["tokenizer.ggml.scores", meta.f32s(v.scores)],
    ["tokenizer.ggml.token_type", meta.i32s(v.types)],
    ["tokenizer.ggml.bos_token_id", meta.u32(1)],
    ["tokenizer.ggml.eos_token_id", meta.u32(v.idOf(eos))],
    ["tokenizer.ggml.unknown_token_id", meta.u32(0)],
    ["tokenizer.ggml.add_bos_token", meta.bool(true)],
    ["tokenizer.ggml.add_eos_token", meta.bool(false)],
  ];
}
