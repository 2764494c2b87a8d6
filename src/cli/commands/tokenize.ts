/**
 * `deno task cli tokenize [--model PATH|URL] --text TEXT [--json]`: the token ids (and
 * pieces) a model's own tokenizer gives for a text, BOS included where the model adds it.
 * Reads only the file's header.
 */
import type { GGUFFile } from "../../gguf/reader.ts";
import { tokenizerFromMetadata } from "../../tokenizer/tokenizer.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { MODEL_FLAG, openModelFile } from "../default-model.ts";

/** One token of the output. */
export interface TokenizedPiece {
  readonly id: number;
  /** The vocabulary entry as stored (`Ġthe`, `▁the`, `<0x0A>`). */
  readonly token: string;
  /** The text it stands for. */
  readonly piece: string;
}

/** What `tokenize --json` prints. */
export interface TokenizeResult {
  readonly model: string;
  readonly tokenizer: "llama" | "gpt2";
  readonly count: number;
  readonly ids: readonly number[];
  readonly tokens: readonly TokenizedPiece[];
}

/** Tokenizes `text` with the tokenizer in `file`'s metadata. */
export function tokenizeWithFile(
  file: GGUFFile,
  text: string,
  options: { addSpecial?: boolean; parseSpecial?: boolean } = {},
): TokenizeResult {
  const tokenizer = tokenizerFromMetadata(file.metadata);
  const ids = tokenizer.encode(text, options);
  return {
    model: file.name,
    tokenizer: tokenizer.kind,
    count: ids.length,
    ids,
    tokens: ids.map((id) => ({ id, token: tokenizer.tokenText(id), piece: tokenizer.piece(id) })),
  };
}

/** `1 token`, `2 tokens`. */
export function countTokens(n: number): string {
  return `${n} ${n === 1 ? "token" : "tokens"}`;
}

/**
 * A header naming the columns (id; the text the token stands for, quoted so spaces and
 * newlines show; the vocabulary entry as stored), a line per token, then the count.
 */
function formatText(r: TokenizeResult): string {
  const idWidth = Math.max("id".length, ...r.ids.map((id) => String(id).length));
  const pieces = r.tokens.map((t) => JSON.stringify(t.piece));
  const pieceWidth = Math.max("piece".length, ...pieces.map((p) => p.length));
  const row = (id: string, piece: string, token: string) => `${id.padStart(idWidth)}  ${piece.padEnd(pieceWidth)}  ${token}`;
  const lines = [row("id", "piece", "token"), ...r.tokens.map((t, i) => row(String(t.id), pieces[i] ?? "", t.token))];
  lines.push(`${countTokens(r.count)} (${r.tokenizer} tokenizer)`);
  return lines.join("\n");
}

/** The `tokenize` command. */
const SPEC = {
  name: "tokenize",
  summary:
    "Prints the token ids (and pieces) a model's tokenizer gives for a text, BOS included where the model adds it.",
  flags: {
    model: MODEL_FLAG,
    text: { type: "string", short: "t", required: true, description: "the text to tokenize" },
    json: { type: "boolean", description: "print one JSON object instead of one line per token" },
    raw: { type: "boolean", description: "add no BOS/EOS even where the model adds them" },
    literal: { type: "boolean", description: "treat special-token text such as <|im_start|> as plain text" },
  },
} as const;

export const tokenizeCommand: CliCommand = defineCommand(
  SPEC,
  "show the token ids and pieces of a text under a model's tokenizer",
  async ({ model, text, json, raw, literal }) => {
    const file = await openModelFile(model);
    try {
      const result = tokenizeWithFile(file, text, { addSpecial: !raw, parseSpecial: !literal });
      console.log(json ? JSON.stringify(result, null, 2) : formatText(result));
    } finally {
      await file.close();
    }
    return 0;
  },
);
