/**
 * `deno task cli generate --prompt TEXT [...]`: generates text with the engine, streaming
 * it to stdout as it is produced; `--json` prints one object at the end instead.
 */
import process from "node:process";
import type { Engine } from "../../engine/engine.ts";
import { RequestAbortedError } from "../../engine/errors.ts";
import { validateGenerateOptions } from "../../engine/options.ts";
import type { GenerateOptions, GenerationResult } from "../../engine/types.ts";
import { InvalidArgumentError } from "../../errors.ts";
import type { ParsedFlags } from "../args.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { ENGINE_FLAGS, engineFromFlags } from "../engine-flags.ts";
import { INTERRUPTED_EXIT_CODE, onInterrupt } from "../interrupt.ts";
import { asFlagError, optionFlags } from "../request-flags.ts";

const SPEC = {
  name: "generate",
  summary: "Generates a continuation of a prompt with the embedded model or --model.",
  flags: {
    ...ENGINE_FLAGS,
    prompt: { type: "string", short: "p", required: true, placeholder: "text", description: "the prompt" },
    maxTokens: {
      type: "number",
      integer: true,
      min: 1,
      placeholder: "n",
      description: "most tokens to generate (default 256)",
    },
    temperature: { type: "number", min: 0, placeholder: "t", description: "0 = greedy (default 0.8)" },
    topK: { type: "number", integer: true, min: 0, placeholder: "k", description: "0 = off (default 40)" },
    topP: { type: "number", placeholder: "p", description: "in (0, 1]; 1 = off (default 0.95)" },
    minP: { type: "number", placeholder: "p", description: "in [0, 1); 0 = off (default 0.05)" },
    repeatPenalty: { type: "number", placeholder: "r", description: "1 = off (default 1)" },
    repeatLastN: {
      type: "number",
      integer: true,
      min: 0,
      placeholder: "n",
      description: "tokens the penalties look at (default 64)",
    },
    presencePenalty: { type: "number", placeholder: "x", description: "in [-2, 2] (default 0)" },
    frequencyPenalty: { type: "number", placeholder: "x", description: "in [-2, 2] (default 0)" },
    seed: {
      type: "number",
      integer: true,
      min: 0,
      placeholder: "n",
      description: "same seed, same output (default: random)",
    },
    stop: { type: "strings", placeholder: "s", description: "stop string (repeat for several)" },
    ignoreEos: { type: "boolean", description: "keep going past end-of-generation tokens" },
    noStream: { type: "boolean", description: "print the text once, at the end" },
    json: { type: "boolean", description: "print one JSON object with ids, text, finish reason and timings" },
  },
} as const;

/** The JSON printed by `generate --json`. */
export function generationJson(result: GenerationResult): Record<string, unknown> {
  return {
    prompt_tokens: result.promptTokens,
    tokens: result.tokens,
    text: result.text,
    finish_reason: result.finishReason,
    usage: {
      prompt_tokens: result.usage.promptTokens,
      completion_tokens: result.usage.completionTokens,
      total_tokens: result.usage.totalTokens,
    },
    timings: {
      queued_ms: result.timings.queuedMs,
      ttft_ms: result.timings.timeToFirstTokenMs,
      prefill_ms: result.timings.prefillMs,
      decode_ms: result.timings.decodeMs,
      prefill_tok_s: result.timings.prefillTokensPerSecond,
      decode_tok_s: result.timings.decodeTokensPerSecond,
    },
  };
}

/** The engine option each flag sets, for errors that name the option (`topP` → `--top-p`). */
const OPTION_FLAGS = optionFlags(
  ["prompt", "maxTokens", "temperature", "topK", "topP", "minP", "repeatPenalty", "presencePenalty", "frequencyPenalty", "seed", "stop"],
  { penaltyWindow: "--repeat-last-n", lookahead: "--lookahead" },
);

type GenerateFlags = ParsedFlags<typeof SPEC.flags>;

/** The request options the flags ask for. */
function requestOptions(f: GenerateFlags): GenerateOptions {
  return {
    maxTokens: f.maxTokens,
    temperature: f.temperature,
    topK: f.topK,
    topP: f.topP,
    minP: f.minP,
    repeatPenalty: f.repeatPenalty,
    penaltyWindow: f.repeatLastN,
    presencePenalty: f.presencePenalty,
    frequencyPenalty: f.frequencyPenalty,
    seed: f.seed,
    stop: f.stop.length > 0 ? f.stop : undefined,
    ignoreEos: f.ignoreEos,
  };
}

/**
 * An empty `--prompt` does what llama.cpp's `llama-cli -p ""` does: generate from BOS alone
 * where the model adds BOS (with a warning, as the output is then the model's unprompted
 * text), and refuse where it does not, as there is nothing to start from.
 */
function checkEmptyPrompt(engine: Engine, prompt: string): void {
  if (prompt !== "") return;
  if (engine.tokenizer.encode("").length === 0) {
    throw new InvalidArgumentError("--prompt", "is empty, and this model adds no BOS token to start from; give some text");
  }
  console.error("warning: --prompt is empty: generating from the BOS token alone (as llama.cpp does)");
}

/** A promise that rejects once `signal` is aborted, to stop awaiting a model load on Ctrl-C. */
function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(new RequestAbortedError(signal.reason));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
}

export const generateCommand: CliCommand = defineCommand(
  SPEC,
  "generate text from a prompt (streams to stdout)",
  async (f) => {
    const options = requestOptions(f);
    // Before the model loads: a bad option is refused at once, named by its flag.
    try {
      validateGenerateOptions(options);
    } catch (err) {
      throw asFlagError(err, OPTION_FLAGS);
    }
    const { engine, loaded } = engineFromFlags(f);
    const interrupt = new AbortController();
    const stopListening = onInterrupt(() => interrupt.abort());
    const interrupted = rejectOnAbort(interrupt.signal);
    interrupted.catch(() => {});
    let streaming = false;
    let ready = false;
    try {
      await Promise.race([loaded, interrupted]);
      ready = true;
      checkEmptyPrompt(engine, f.prompt);
      const stream = engine.generate(f.prompt, { ...options, signal: interrupt.signal });
      if (!f.json && !f.noStream) {
        streaming = true;
        for await (const chunk of stream) process.stdout.write(chunk.text);
      }
      const result = await stream.result;
      if (f.json) console.log(JSON.stringify(generationJson(result)));
      else if (f.noStream) console.log(result.text);
      else process.stdout.write("\n");
      return 0;
    } catch (err) {
      if (!interrupt.signal.aborted) throw asFlagError(err, OPTION_FLAGS);
      // Ctrl-C: what was streamed stays, on a line of its own; the exit code says why. During
      // the load there is nothing on screen yet, so say what was stopped.
      if (streaming) process.stdout.write("\n");
      if (!ready) console.error("interrupted: the model's load was stopped");
      return INTERRUPTED_EXIT_CODE;
    } finally {
      stopListening();
      await engine.dispose();
    }
  },
);
