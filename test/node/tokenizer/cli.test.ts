/**
 * `tokenize` on a synthetic model file: the ids it prints are the tokenizer's, with BOS
 * where the model adds it, and its errors name the missing flag.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { tokenizeCommand, type TokenizeResult } from "../../../src/cli/commands/tokenize.ts";
import { InvalidArgumentError } from "../../../src/errors.ts";
import { syntheticTokenizerMetadata } from "../../../src/tokenizer/synthetic.ts";
import { tokenizerFromMetadata } from "../../../src/tokenizer/tokenizer.ts";
import { writeTinyLlamaModel } from "../support/tiny-model.ts";

let dir: string;
let path: string;
const entries = syntheticTokenizerMetadata("llama", 600);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tokenize-cli-"));
  path = join(dir, "spm.gguf");
  await writeTinyLlamaModel(path, entries);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((...parts: unknown[]) => {
    lines.push(parts.join(" "));
  });
  try {
    return { code: await tokenizeCommand.run(args), out: lines.join("\n") };
  } finally {
    spy.mockRestore();
  }
}

describe("tokenize command", () => {
  it("prints the ids and pieces as JSON, BOS first", async () => {
    const { code, out } = await run(["--model", path, "--text", "Hello <|im_end|>", "--json"]);
    expect(code).toBe(0);
    const result = JSON.parse(out) as TokenizeResult;
    const tokenizer = tokenizerFromMetadata(Object.fromEntries(entries));
    expect(result.ids).toEqual(tokenizer.encode("Hello <|im_end|>"));
    expect(result.ids[0]).toBe(1);
    expect(result.tokens.at(-1)).toEqual({ id: tokenizer.eot, token: "<|im_end|>", piece: "<|im_end|>" });
    expect(result.count).toBe(result.ids.length);
  });

  it("leaves out BOS with --raw and reads special-token text literally with --literal", async () => {
    const tokenizer = tokenizerFromMetadata(Object.fromEntries(entries));
    const { out } = await run(["-m", path, "-t", "<|im_end|>", "--json", "--raw", "--literal"]);
    expect((JSON.parse(out) as TokenizeResult).ids).toEqual(tokenizer.encode("<|im_end|>", { addSpecial: false, parseSpecial: false }));
  });

  it("prints a header naming the columns, one line per token, then the count", async () => {
    const tokenizer = tokenizerFromMetadata(Object.fromEntries(entries));
    const ids = tokenizer.encode("a b");
    const { out } = await run(["-m", path, "-t", "a b"]);
    const lines = out.split("\n");
    expect(lines[0]?.trim().split(/\s+/)).toEqual(["id", "piece", "token"]);
    expect(lines[1]).toMatch(/^\s*1 {2}"<s>"\s+<s>$/);
    expect(lines.length).toBe(1 + ids.length + 1);
    expect(lines.at(-1)).toBe(`${ids.length} tokens (llama tokenizer)`);
  });

  it("says \"1 token\", not \"1 tokens\"", async () => {
    // The empty text is BOS alone.
    const { out } = await run(["-m", path, "--text", ""]);
    expect(out.split("\n").at(-1)).toBe("1 token (llama tokenizer)");
  });

  it("requires --text", async () => {
    await expect(run(["-m", path])).rejects.toThrow(InvalidArgumentError);
  });
});
