/**
 * The tokenizer of a GGUF model, built from its `tokenizer.ggml.*` metadata, giving the
 * same ids and text as llama.cpp for the same model.
 */
import { TokenizerError } from "../errors.ts";
import { BpeEncoder } from "./bpe.ts";
import { detokenizeBytes, PieceTable } from "./decode.ts";
import { type Fragment, type SpecialMatcher, specialMatchers } from "./special.ts";
import { SpmEncoder } from "./spm.ts";
import { metadataValue, readVocab, type TokenizerMetadata, type Vocab } from "./vocab.ts";

/** Options of `Tokenizer.encode`. */
export interface EncodeOptions {
  /** Add BOS/EOS where the model's flags say to (default true). */
  readonly addSpecial?: boolean;
  /** Recognize special-token text such as `<|im_start|>` as that token (default true). */
  readonly parseSpecial?: boolean;
}

/** Options of `Tokenizer.decode` and `createStreamDecoder`. */
export interface DecodeOptions {
  /** Leave control tokens (BOS, `<|im_end|>`, ...) out of the text (default false). */
  readonly skipSpecial?: boolean;
}

/** Turns generated ids into text as they arrive, never splitting a UTF-8 character. */
export interface StreamDecoder {
  /** Adds one token; returns the text that is now complete (possibly empty). */
  push(id: number): string;
  /** Returns whatever is held back; an incomplete character becomes U+FFFD. */
  flush(): string;
}

/** Text ↔ token ids for one model. */
export interface Tokenizer {
  readonly kind: "llama" | "gpt2";
  readonly vocabSize: number;
  readonly bos?: number;
  readonly eos?: number;
  /** End-of-turn token (`<|im_end|>`, `<|eot_id|>`, ...), where the model has one. */
  readonly eot?: number;
  readonly unk?: number;
  readonly pad?: number;
  /** Every id that ends generation: EOS, EOT and tokens llama.cpp recognizes by text. */
  readonly eogIds: ReadonlySet<number>;
  /** Whether `encode` adds BOS / EOS (with `addSpecial`). */
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** The model's chat template (`tokenizer.chat_template`), where the file has one. */
  readonly chatTemplate?: string;
  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** The text one token stands for (special tokens included; a lone byte shows as U+FFFD). */
  piece(id: number): string;
  /** The bytes one token stands for, special tokens included: llama.cpp's `token_to_piece`. */
  pieceBytes(id: number): Uint8Array;
  /** The vocabulary entry of a token, as stored (`▁the`, `Ġthe`, `<0x0A>`). */
  tokenText(id: number): string;
  isEog(id: number): boolean;
  createStreamDecoder(options?: DecodeOptions): StreamDecoder;
}

/**
 * Builds the tokenizer a model's metadata describes (`tokenizer.ggml.model` "llama" or
 * "gpt2"). Throws `TokenizerError` for a missing or malformed vocabulary.
 */
export function tokenizerFromMetadata(metadata: TokenizerMetadata): Tokenizer {
  const template = metadataValue(metadata, "tokenizer.chat_template");
  return new GgufTokenizer(readVocab(metadata), typeof template === "string" ? template : undefined);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * The text with lone surrogates replaced by U+FFFD: what its UTF-8 (and so llama.cpp)
 * holds in their place, so every later step sees the same characters llama.cpp does.
 */
function wellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, "\uFFFD");
}

class GgufTokenizer implements Tokenizer {
  readonly kind: "llama" | "gpt2";
  readonly vocabSize: number;
  readonly bos?: number;
  readonly eos?: number;
  readonly eot?: number;
  readonly unk?: number;
  readonly pad?: number;
  readonly eogIds: ReadonlySet<number>;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly chatTemplate?: string;
  private readonly encoder: { encode(text: string, out: number[]): void };
  private readonly pieces: PieceTable;
  private matchers?: { all: SpecialMatcher; userDefined: SpecialMatcher };
  private readonly textDecoder = new TextDecoder();

  constructor(private readonly vocab: Vocab, chatTemplate?: string) {
    this.chatTemplate = chatTemplate;
    this.kind = vocab.kind;
    this.vocabSize = vocab.tokens.length;
    this.bos = vocab.bos;
    this.eos = vocab.eos;
    this.eot = vocab.eot;
    this.unk = vocab.unk;
    this.pad = vocab.pad;
    this.eogIds = vocab.eogIds;
    this.addBos = vocab.addBos;
    this.addEos = vocab.addEos;
    this.encoder = vocab.kind === "llama" ? new SpmEncoder(vocab) : new BpeEncoder(vocab);
    this.pieces = new PieceTable(vocab);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecial ?? true;
    const parseSpecial = options.parseSpecial ?? true;
    const out: number[] = [];
    if (addSpecial && this.vocab.addBos) out.push(this.required(this.vocab.bos, "BOS", "bos_token_id"));
    // Built on first use: a 150k-token vocabulary takes a moment to index.
    this.matchers ??= specialMatchers(this.vocab);
    const matcher = parseSpecial ? this.matchers.all : this.matchers.userDefined;
    const fragments: Fragment[] = matcher.partition(wellFormed(text));
    // SentencePiece puts a space before text at the start and after each special token.
    let afterSpecial = true;
    for (const f of fragments) {
      if ("token" in f) {
        out.push(f.token);
        afterSpecial = true;
        continue;
      }
      const prefix = this.vocab.addSpacePrefix && this.vocab.kind === "llama" && afterSpecial ? " " : "";
      this.encoder.encode(prefix + f.text, out);
      afterSpecial = false;
    }
    if (addSpecial && this.vocab.addEos) out.push(this.required(this.vocab.eos, "EOS", "eos_token_id"));
    return out;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    this.checkIds(ids);
    const bytes = detokenizeBytes(this.vocab, this.pieces, ids, {
      removeSpecial: false,
      unparseSpecial: !(options.skipSpecial ?? false),
    });
    return this.textDecoder.decode(bytes);
  }

  piece(id: number): string {
    return this.textDecoder.decode(this.pieceBytes(id));
  }

  pieceBytes(id: number): Uint8Array {
    this.checkIds([id]);
    return this.pieces.bytes(id, true).slice(); // a copy: the table's bytes are cached
  }

  tokenText(id: number): string {
    this.checkIds([id]);
    return this.vocab.tokens[id] as string;
  }

  isEog(id: number): boolean {
    return this.eogIds.has(id);
  }

  createStreamDecoder(options: DecodeOptions = {}): StreamDecoder {
    const special = !(options.skipSpecial ?? false);
    // TextDecoder in streaming mode holds back an incomplete UTF-8 sequence until the
    // bytes that finish it arrive, which is exactly the contract here.
    const decoder = new TextDecoder();
    return {
      push: (id: number): string => {
        this.checkIds([id]);
        return decoder.decode(this.pieces.bytes(id, special), { stream: true });
      },
      flush: (): string => decoder.decode(),
    };
  }

  private required(id: number | undefined, what: string, key: string): number {
    if (id === undefined) {
      throw new TokenizerError("NO_SPECIAL_TOKEN", `the model adds ${what} but has no valid tokenizer.ggml.${key}`);
    }
    return id;
  }

  private checkIds(ids: readonly number[]): void {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new TokenizerError("TOKEN_OUT_OF_RANGE", `token id ${id} is outside the vocabulary of ${this.vocabSize}`);
      }
    }
  }
}
