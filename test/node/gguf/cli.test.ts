/**
 * `inspect` end to end under Deno (as `deno task cli` runs it), and the shared argv
 * parser every command uses.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { helpText, parseArgs } from "../../../src/cli/args.ts";
import { COMMANDS } from "../../../src/cli/commands/index.ts";
import { InvalidArgumentError } from "../../../src/errors.ts";
import { meta, writeGGUFFile } from "../../../src/gguf/writer.ts";
import { tinyModelSpec } from "./fixtures.ts";

const root = join(import.meta.dirname, "../../..");
let dir: string;
let model: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gguf-cli-"));
  const spec = tinyModelSpec({ nLayers: 2, extra: [["tokenizer.chat_template", meta.str("{{ messages }}")]] });
  [model = ""] = await writeGGUFFile(join(dir, "tiny.gguf"), spec);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function cli(...args: string[]) {
  const r = spawnSync("deno", ["run", "-A", "src/cli/main.ts", ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("deno task cli inspect", () => {
  it("--json prints one object describing the file", () => {
    const r = cli("inspect", "--model", model, "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    // Counts from the fixture: 2 layers, n_embd 64, n_ff 96, 4 heads of 16 (2 kv), 258 tokens, untied.
    const perLayer = 64 + 64 * 64 + 2 * 64 * 32 + 64 * 64 + 64 + 3 * 64 * 96;
    expect(s).toMatchObject({
      file: model,
      architecture: "llama",
      family: "pre-norm, SwiGLU, normal RoPE (optional Q/K/V biases; Llama 3 rope_freqs)",
      name: "tiny-llama",
      ggufVersion: 3,
      shards: 1,
      tensorCount: 3 + 2 * 9,
      parameterCount: 64 * 258 + 64 + 64 * 258 + 2 * perLayer,
      tokenizer: "gpt2",
      vocabSize: 258,
      contextLength: 128,
      chatTemplate: true,
      configError: null,
    });
    expect(s.config).toMatchObject({ nLayers: 2, nEmbd: 64, nHeads: 4, nKvHeads: 2, vocabSize: 258 });
    // F32: embedding and 5 norms; Q8_0: output and 7 matrices per layer (34 bytes per 32 values).
    const q8 = s.quantMix.find((q: { type: string }) => q.type === "Q8_0");
    const f32 = s.quantMix.find((q: { type: string }) => q.type === "F32");
    expect(q8).toEqual({ type: "Q8_0", tensors: 1 + 2 * 7, parameters: 64 * 258 + 2 * (perLayer - 128), bytes: ((64 * 258 + 2 * (perLayer - 128)) / 32) * 34 });
    expect(f32).toEqual({ type: "F32", tensors: 2 + 2 * 2, parameters: 64 * 258 + 64 + 2 * 128, bytes: 4 * (64 * 258 + 64 + 2 * 128) });
  });

  it("prints text without --json", () => {
    const r = cli("inspect", "-m", model);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("architecture:   llama");
    expect(r.stdout).toContain("family:         pre-norm, SwiGLU, normal RoPE");
    expect(r.stdout).toContain("chat template:  yes");
    expect(r.stdout).toMatch(/Q8_0\s+15 tensors/);
  });

  it("a missing file: one error line, exit 1", () => {
    const path = join(dir, "missing.gguf");
    const r = cli("inspect", "--model", path);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toEqual([`error: ${path}: no such file [NOT_FOUND]`]);
  });

  it("an unknown flag: one error line, exit 1", () => {
    const r = cli("inspect", "--modle", model);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: --modle: unknown option for "inspect"/);
  });
});

describe("parseArgs", () => {
  const spec = {
    name: "demo",
    summary: "A demo command.",
    flags: {
      model: { type: "string", short: "m", description: "model path", placeholder: "path" },
      maxTokens: { type: "number", integer: true, min: 1, default: 16, description: "tokens to generate" },
      temperature: { type: "number", description: "sampling temperature" },
      json: { type: "boolean", description: "JSON output" },
      stop: { type: "strings", description: "stop string" },
      host: { type: "string", default: "127.0.0.1", description: "address" },
    },
    positionals: [{ name: "prompt", description: "text to complete" }],
  } as const;

  it("parses every kind of flag, with defaults", () => {
    const r = parseArgs(["-m", "a.gguf", "--max-tokens=5", "--temperature", "-0.5", "--json", "--stop", "x", "--stop=y", "hello"], spec);
    if (r.help) throw new Error("unexpected help");
    expect(r.flags).toEqual({ model: "a.gguf", maxTokens: 5, temperature: -0.5, json: true, stop: ["x", "y"], host: "127.0.0.1" });
    expect(r.positionals).toEqual(["hello"]);
    // The types follow the spec: defaults make a flag always present.
    const maxTokens: number = r.flags.maxTokens;
    const model: string | undefined = r.flags.model;
    expect([maxTokens, model]).toEqual([5, "a.gguf"]);
  });

  it("applies defaults and --no- for booleans; -- ends the flags", () => {
    const r = parseArgs(["--no-json", "--", "--not-a-flag"], spec);
    if (r.help) throw new Error("unexpected help");
    expect(r.flags).toEqual({ model: undefined, maxTokens: 16, temperature: undefined, json: false, stop: [], host: "127.0.0.1" });
    expect(r.positionals).toEqual(["--not-a-flag"]);
  });

  it("--help gives the generated help text", () => {
    const r = parseArgs(["--model", "x", "--help"], spec);
    expect(r).toEqual({ help: true, text: helpText(spec) });
    const text = helpText(spec);
    expect(text).toContain("usage: deno task cli demo [options] [prompt]");
    expect(text).toMatch(/-m, --model <path>\s+model path/);
    expect(text).toMatch(/--max-tokens <number>\s+tokens to generate \(default: 16\)/);
    expect(text).toMatch(/--stop <string>\s+stop string \(repeatable\)/);
    expect(text).toMatch(/-h, --help\s+show this help/);
  });

  it("shows a default once, whether the description states it or only the field has it", () => {
    const text = helpText({
      name: "d",
      summary: "s",
      flags: {
        host: { type: "string", default: "127.0.0.1", description: "address" },
        context: { type: "number", default: 0, description: "context (default: the model's)" },
      },
    });
    expect(text).toMatch(/--host <string>\s+address \(default: 127\.0\.0\.1\)$/m);
    expect(text).toMatch(/--context <number>\s+context \(default: the model's\)$/m);
  });

  it("every command's --help shows each default once", () => {
    for (const command of COMMANDS) {
      const { stdout } = cli(command.name, "--help");
      const repeated = stdout.split("\n").filter((line) => (line.match(/\(default\b/g) ?? []).length > 1);
      expect(repeated, command.name).toEqual([]);
    }
  });

  const bad: Array<[string[], string]> = [
    [["--nope"], "--nope"],
    [["-x"], "-x"],
    [["--max-tokens"], "--max-tokens"],
    [["--max-tokens", "abc"], "--max-tokens"],
    [["--max-tokens", "1.5"], "--max-tokens"],
    [["--max-tokens", "0"], "--max-tokens"],
    [["--max-tokens="], "--max-tokens"],
    [["--temperature", "Infinity"], "--temperature"],
    [["--json=maybe"], "--json"],
    [["--no-model"], "--no-model"],
    [["a", "b"], "b"],
  ];
  for (const [args, param] of bad) {
    it(`rejects ${JSON.stringify(args)} naming ${param}`, () => {
      try {
        parseArgs(args, spec);
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidArgumentError);
        expect(err instanceof InvalidArgumentError && err.param).toBe(param);
        return;
      }
      throw new Error("accepted");
    });
  }

  it("required flags and positionals", () => {
    const req = {
      name: "req",
      summary: "s",
      flags: { out: { type: "string", required: true, description: "output" } },
      positionals: [{ name: "input", description: "input", required: true }],
    } as const;
    expect(() => parseArgs(["in"], req)).toThrow(/--out: is required/);
    expect(() => parseArgs(["--out", "o"], req)).toThrow(/<input>: is required/);
    const r = parseArgs(["--out", "o", "in"], req);
    if (r.help) throw new Error("unexpected help");
    const out: string = r.flags.out;
    expect([out, r.positionals]).toEqual(["o", ["in"]]);
  });
});
