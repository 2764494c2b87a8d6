/**
 * The CLI as a user runs it: real processes, real files. Expected values come from the
 * engine in this process (same model, same backend, greedy).
 */
import assert from "node:assert/strict";
import { loadEngine } from "../../src/engine/engine.ts";
import type { ProfileReport } from "../../src/cli/commands/bench-profile.ts";
import { COMMANDS } from "../../src/cli/commands/index.ts";
import { openGGUF } from "../../src/gguf/reader.ts";
import { modelConfigFromGGUF } from "../../src/model/config.ts";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { BACKENDS } from "./support/backends.ts";
import { cli } from "./support/cli-process.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const backend = BACKENDS.at(-1)!;
const BACKEND_ARGS = ["--backend", backend.options.backend ?? "webgpu"];

Deno.test(`cli[${backend.name}]: generate --json gives the engine's greedy tokens and the prompt ids with BOS`, async () => {
  const engine = await loadEngine(MODEL, backend.options);
  const expected = await engine.generate("Once upon a time", { temperature: 0, maxTokens: 10 }).result;
  const ids = engine.tokenizer.encode("Once upon a time");
  await engine.dispose();

  const { code, stdout } = await cli(["generate", "--model", MODEL, ...BACKEND_ARGS, "--prompt", "Once upon a time", "--max-tokens", "10", "--temperature", "0", "--json"]);
  assert.equal(code, 0);
  const json = JSON.parse(stdout);
  assert.deepEqual(json.prompt_tokens, ids);
  assert.deepEqual(json.tokens, expected.tokens);
  assert.equal(json.text, expected.text);
  assert.equal(json.finish_reason, expected.finishReason);
  assert.equal(typeof json.timings.decode_tok_s, "number");

  const streamed = await cli(["generate", "--model", MODEL, ...BACKEND_ARGS, "--prompt", "Once upon a time", "--max-tokens", "10", "--temperature", "0"]);
  assert.equal(streamed.code, 0);
  assert.equal(streamed.stdout, expected.text + "\n");
  assert.equal(streamed.stderr.includes("loading"), false, "no progress bar when stderr is not a terminal");
});

Deno.test(`cli[${backend.name}]: chat answers each line of piped input and exits 0 at end of input`, async () => {
  const { code, stdout } = await cli(["chat", "--model", MODEL, ...BACKEND_ARGS, "--max-tokens", "4", "--temperature", "0"], "hello\nhow are you\n");
  assert.equal(code, 0);
  assert.equal(stdout.split("> ").length - 1, 3, "three prompts: two answered, then end of input");
});

Deno.test("cli: every command has --help; errors are one line and a non-zero exit", async () => {
  for (const command of COMMANDS) {
    const { code, stdout } = await cli([command.name, "--help"]);
    assert.equal(code, 0, command.name);
    assert.match(stdout, /--/, `${command.name} --help lists its options`);
  }
  const missing = await cli(["generate", "--model", "/nonexistent/model.gguf", "--prompt", "x"]);
  assert.notEqual(missing.code, 0);
  assert.equal(missing.stderr.trim().split("\n").length, 1, missing.stderr);
  assert.match(missing.stderr, /^error: .*nonexistent/);

  const badFlag = await cli(["generate", "--prompt", "x", "--temperature", "hot"]);
  assert.notEqual(badFlag.code, 0);
  assert.match(badFlag.stderr, /^error: .*temperature/);

  const unknown = await cli(["frobnicate"]);
  assert.equal(unknown.code, 2);
});

Deno.test("cli: bench --profile times every kernel of a prefill and a decode step on the GPU", async () => {
  const { code, stdout, stderr } = await cli(["bench", "--profile", "--json", "--model", MODEL, "--prompt-tokens", "8", "--webgpu", "deno"]);
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout) as ProfileReport;
  const file = await openGGUF(MODEL);
  const config = modelConfigFromGGUF(file);
  await file.close();
  assert.equal(report.prefill.tokens, 8);
  assert.equal(report.decode.tokens, 1);
  const calls = (kernel: string) => report.decode.kernels.find((k) => k.kernel === kernel)?.calls;
  // A decode step: seven products per layer and the output product, all Q8_0 in this file;
  // one attention, one RoPE, one SwiGLU per layer (attention is not split on lavapipe).
  assert.equal(calls("matvec Q8_0"), 7 * config.nLayers + 1);
  for (const kernel of ["attention", "rope", "swiglu"]) assert.equal(calls(kernel), config.nLayers, kernel);
  for (const step of [report.prefill, report.decode]) {
    assert.ok(step.kernels.every((k) => k.ns >= 0));
    const sum = step.kernels.reduce((s, k) => s + k.ns, 0) / 1000;
    assert.ok(step.gpuUs > 0 && Math.abs(step.gpuUs - sum) < 1e-6 * sum + 1e-9, `${step.gpuUs} vs ${sum}`);
  }
  assert.ok(report.decodeWallUsPerToken > 0);
  assert.ok(report.weightBytes > 0);
});

Deno.test("cli: perplexity on WebGPU agrees with the CPU reference", async () => {
  const text = await Deno.makeTempFile({ suffix: ".txt" });
  await Deno.writeTextFile(text, "The sea was calm and the ships came home one by one, their sails full of evening wind. ".repeat(6));
  const run = async (backend: string) => {
    const { code, stdout, stderr } = await cli(["perplexity", "--model", MODEL, "--file", text, "--context", "64", "--backend", backend, "--json"]);
    assert.equal(code, 0, stderr);
    return JSON.parse(stdout);
  };
  const cpu = await run("cpu");
  const gpu = await run("webgpu");
  assert.equal(gpu.tokens, cpu.tokens);
  assert.ok(Math.abs(gpu.nll - cpu.nll) < 1e-4, `nll ${gpu.nll} vs ${cpu.nll}`);
  await Deno.remove(text);
});

Deno.test("cli: perplexity of the embedded model on held-out text, WebGPU vs the CPU reference", async () => {
  // The CPU reference is checked against llama.cpp on the same file and text (vitest,
  // test/node/embedded): this closes the loop from the GPU to llama.cpp.
  const model = "models/tiny-fortunes-f32.gguf";
  const text = "test/fixtures/heldout-sample.txt";
  const run = async (backend: string) => {
    const args = ["perplexity", "--model", model, "--file", text, "--context", "256", "--backend", backend, "--json"];
    const { code, stdout, stderr } = await cli(args);
    assert.equal(code, 0, stderr);
    return JSON.parse(stdout);
  };
  const cpu = await run("cpu");
  const gpu = await run("webgpu");
  console.log(`embedded f32 held-out slice: perplexity cpu ${cpu.perplexity.toFixed(4)}, webgpu ${gpu.perplexity.toFixed(4)}`);
  assert.equal(gpu.tokens, cpu.tokens);
  assert.ok(Math.abs(gpu.perplexity / cpu.perplexity - 1) < 1e-3, `${gpu.perplexity} vs ${cpu.perplexity}`);
});

Deno.test("cli: a request option the engine refuses is named by its flag (--top-p, not topP), before the model loads", async () => {
  const { code, stderr } = await cli(["generate", "--model", MODEL, "--prompt", "x", "--top-p", "2"]);
  assert.equal(code, 1);
  assert.match(stderr, /^error: --top-p: must be in \(0, 1\], got 2/);
  assert.equal(stderr.includes("topP"), false, stderr);
  const window = await cli(["generate", "--model", MODEL, "--prompt", "x", "--repeat-penalty", "0"]);
  assert.match(window.stderr, /^error: --repeat-penalty: /);
});

Deno.test("cli: --context past the model's trained context is refused, naming --context and the model's value", async () => {
  const file = await openGGUF(MODEL);
  const trained = modelConfigFromGGUF(file).contextLength;
  await file.close();
  const over = await cli(["generate", "--model", MODEL, "--backend", "cpu", "--prompt", "x", "--context", String(trained + 1)]);
  assert.equal(over.code, 1);
  assert.match(over.stderr, new RegExp(`^error: --context: ${trained + 1} .*trained context of ${trained}\\b`));
  const fits = await cli(["generate", "--model", MODEL, "--backend", "cpu", "--prompt", "x", "--context", String(trained), "--max-tokens", "2", "--json"]);
  assert.equal(fits.code, 0, fits.stderr);
});

Deno.test("cli: an empty --prompt generates from BOS alone where the model adds BOS (as llama-cli -p \"\"), and is refused where it adds none", async () => {
  const engine = await loadEngine(MODEL, { backend: "cpu" });
  const bosOnly = engine.tokenizer.encode("");
  await engine.dispose();
  assert.equal(bosOnly.length, 1, "the llama file adds BOS");
  const withBos = await cli(["generate", "--model", MODEL, "--backend", "cpu", "--prompt", "", "--max-tokens", "2", "--json"]);
  assert.equal(withBos.code, 0, withBos.stderr);
  assert.deepEqual(JSON.parse(withBos.stdout).prompt_tokens, bosOnly);
  assert.match(withBos.stderr, /warning: --prompt is empty/);

  const noBosModel = await syntheticModelPath("qwen2", "F32");
  const qwen = await loadEngine(noBosModel, { backend: "cpu" });
  const nothing = qwen.tokenizer.encode("");
  await qwen.dispose();
  assert.deepEqual(nothing, [], "the qwen2 file adds no BOS");
  const refused = await cli(["generate", "--model", noBosModel, "--backend", "cpu", "--prompt", ""]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^error: --prompt: is empty/);
});

Deno.test(`cli[${backend.name}]: Ctrl-C (SIGINT) during generate stops it, disposes the engine and exits 130`, async () => {
  // A generation as long as the context allows; SIGINT goes as soon as its first text arrives.
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/cli/main.ts", "generate", "--model", MODEL, ...BACKEND_ARGS, "--prompt", "Once", "--ignore-eos", "--max-tokens", "100000", "--temperature", "0"],
    cwd: new URL("../../", import.meta.url),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp" },
  }).spawn();
  const reader = child.stdout.getReader();
  const first = await reader.read();
  assert.equal(first.done, false, "generate printed nothing");
  child.kill("SIGINT");
  let rest = "";
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += new TextDecoder().decode(chunk.value);
  const status = await child.status;
  const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  assert.equal(status.signal, null, "the command caught SIGINT and exited by itself");
  assert.equal(status.code, 130, stderr);
  assert.equal(stderr, "", "an interrupt is not reported as an error");
  assert.ok(rest.endsWith("\n"), "the streamed text ends its line");
});

/** A command's output on a pseudo-terminal, read as it comes; `waitFor` resolves on text, not on time. */
class TerminalOutput {
  #text = "";
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }
  /**
   * Everything so far as a reader sees it: carriage returns removed (the terminal turns
   * "\n" into "\r\n"), and the control sequences readline draws its line with.
   */
  get text(): string {
    // deno-lint-ignore no-control-regex
    return this.#text.replaceAll("\r", "").replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
  }
  /** Reads until `text` appears at or after `from`; returns the index just past it. */
  async waitFor(text: string, from = 0): Promise<number> {
    for (;;) {
      const at = this.text.indexOf(text, from);
      if (at >= 0) return at + text.length;
      const chunk = await this.#reader.read();
      if (chunk.done) throw new Error(`the output ended without ${JSON.stringify(text)}:\n${this.text}`);
      this.#text += this.#decoder.decode(chunk.value, { stream: true });
    }
  }
  /** Reads to the end. */
  async rest(): Promise<string> {
    for (let chunk = await this.#reader.read(); !chunk.done; chunk = await this.#reader.read()) {
      this.#text += this.#decoder.decode(chunk.value, { stream: true });
    }
    return this.text;
  }
}

Deno.test("cli: chat on a terminal edits the line (arrow keys), recalls history (up arrow), and leaves on Ctrl-D with a newline", async () => {
  // The answers the model gives to a line, then to the same line again after its first answer.
  const model = "models/tiny-fortunes-q8_0.gguf";
  const options = { temperature: 0, maxTokens: 8 } as const;
  const engine = await loadEngine(model, { backend: "cpu" });
  const line = "tell me about the sea";
  const first = (await engine.generate([{ role: "user", content: line }], options).result).text;
  const second = (await engine.generate([
    { role: "user", content: line },
    { role: "assistant", content: first },
    { role: "user", content: line },
  ], options).result).text;
  // The line as typed below, keys unedited: this model answers it otherwise.
  const unedited = (await engine.generate([{ role: "user", content: "tell me about the ea\x1b[D\x1b[Ds" }], options).result).text;
  assert.notEqual(unedited, first, "the test tells an edited line from an unedited one");
  await engine.dispose();
  assert.ok(first.trim() !== "" && second.trim() !== "", "the model answers");

  // `script` gives the command a pseudo-terminal: stdin and stdout are TTYs, as in a shell.
  const command = [Deno.execPath(), "run", "-A", "src/cli/main.ts", "chat", "--model", model, "--backend", "cpu", "--temperature", "0", "--max-tokens", "8"];
  const child = new Deno.Command("script", {
    args: ["-qefc", command.join(" "), "/dev/null"],
    cwd: new URL("../../", import.meta.url),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1", TERM: "xterm" },
  }).spawn();
  const keys = child.stdin.getWriter();
  const type = (s: string) => keys.write(new TextEncoder().encode(s));
  const term = new TerminalOutput(child.stdout);

  let at = await term.waitFor("> ", await term.waitFor("chatting with"));
  // Each answer ends with a new prompt on a line of its own.
  const answer = async () => {
    const end = await term.waitFor("\n> ", at);
    const text = term.text.slice(at, end);
    at = end;
    return text;
  };
  // "...the ea", two left arrows, "s": the line is "...the sea" only if the arrows moved the cursor.
  await type("tell me about the ea\x1b[D\x1b[Ds\r");
  assert.ok((await answer()).includes(first), `the answer to "${line}":\n${term.text}`);
  // Up arrow recalls the line; Enter sends it again.
  await type("\x1b[A\r");
  assert.ok((await answer()).includes(second), `the answer to "${line}" again:\n${term.text}`);
  await type("\x04");
  await keys.close();
  const output = await term.rest();
  const status = await child.status;
  assert.equal(status.code, 0, output);
  assert.ok(output.endsWith("\n"), `leaving ends the prompt's line: ${JSON.stringify(output.slice(-20))}`);
  assert.equal(output.includes("[D"), false, "the arrow key was not inserted as text");
});

Deno.test("cli: make-model draws a progress bar of tensors and bytes on a terminal, and nothing on a pipe", async () => {
  const dir = await Deno.makeTempDir();
  const out = `${dir}/m.gguf`;
  const args = ["run", "-A", "src/cli/main.ts", "make-model", "--arch", "qwen2", "--preset", "tiny", "--quant", "Q8_0", "--out", out];
  const child = new Deno.Command("script", {
    args: ["-qefc", [Deno.execPath(), ...args].join(" "), "/dev/null"],
    cwd: new URL("../../", import.meta.url),
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
    env: { XDG_RUNTIME_DIR: "/tmp", TERM: "xterm" },
  }).spawn();
  const output = await new TerminalOutput(child.stdout).rest();
  assert.equal((await child.status).code, 0, output);
  const file = await openGGUF(out);
  const tensors = file.tensors.length;
  await file.close();
  assert.match(output, new RegExp(`writing .*tensors 0/${tensors}`), output);
  assert.match(output, new RegExp(`writing .*100%.* tensors ${tensors}/${tensors}`), output);
  assert.match(output, /wrote .*m\.gguf/);

  const piped = await cli(args.slice(3));
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(piped.stderr, "", "no bar when stderr is not a terminal");
  assert.match(piped.stdout, /^wrote /);
  await Deno.remove(dir, { recursive: true });
});
