/**
 * `deno task cli chat`: an interactive chat in the terminal, through the model's chat
 * template, keeping the history. Ctrl-C stops the answer being written; Ctrl-C at the
 * prompt (or Ctrl-D) leaves. The engine is disposed, awaited, before the command returns.
 */
import process from "node:process";
import { createInterface, type Interface } from "node:readline";
import { RequestAbortedError } from "../../engine/errors.ts";
import type { ChatMessage, GenerationResult } from "../../engine/types.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { ENGINE_FLAGS, engineFromFlags } from "../engine-flags.ts";
import { INTERRUPTED_EXIT_CODE, onInterrupt } from "../interrupt.ts";

const SPEC = {
  name: "chat",
  summary: "Chats with the model in the terminal. Ctrl-C stops an answer; Ctrl-C at the prompt or Ctrl-D leaves.",
  flags: {
    ...ENGINE_FLAGS,
    system: { type: "string", placeholder: "text", description: "a system prompt" },
    maxTokens: {
      type: "number",
      integer: true,
      min: 1,
      default: 256,
      placeholder: "n",
      description: "most tokens per answer",
    },
    temperature: { type: "number", min: 0, placeholder: "t", description: "0 = greedy (default 0.8)" },
    seed: { type: "number", integer: true, min: 0, placeholder: "n", description: "random seed" },
    stats: {
      type: "boolean",
      description: "after each answer, print to stderr its prompt tokens, how many were reused from the KV cache, and its speed",
    },
  },
} as const;

/**
 * The line reader: on a terminal, readline's own editing (arrow keys, Home/End, word
 * moves) and history (up/down); from a pipe, plain lines. In terminal mode readline keeps
 * the terminal raw, so Ctrl-C arrives as its "SIGINT" event rather than a signal.
 */
function lineReader(): Interface {
  const terminal = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const rl = createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal,
    prompt: "> ",
    historySize: 1000,
    removeHistoryDuplicates: true,
  });
  return rl;
}

/** One line about an answer: `[prompt 120 tokens, 96 reused, 24 computed; 30 generated; first token 41 ms]`. */
function turnStats(r: GenerationResult): string {
  const u = r.usage;
  return `[prompt ${u.promptTokens} tokens, ${u.cachedTokens} reused, ${u.promptTokens - u.cachedTokens} computed; ` +
    `${u.completionTokens} generated; first token ${r.timings.timeToFirstTokenMs.toFixed(0)} ms]`;
}

export const chatCommand: CliCommand = defineCommand(SPEC, "chat with the model in the terminal", async (f) => {
  const { engine, loaded } = engineFromFlags(f);
  const rl = lineReader();
  // Iterate from the start, so lines piped in while the model loads are not lost.
  const lines: AsyncIterator<string> = rl[Symbol.asyncIterator]();
  // Ctrl-C stops the answer being written; at the prompt it leaves, with exit code 130
  // (as llama-cli does), where Ctrl-D leaves with 0.
  let answering: AbortController | undefined;
  let interrupted = false;
  const onCtrlC = () => {
    if (answering) {
      answering.abort();
    } else {
      interrupted = true;
      rl.close();
    }
  };
  rl.on("SIGINT", onCtrlC);
  // Lines read before the input ended (piped, or typed ahead of Ctrl-D) are still answered,
  // but a closed readline refuses prompt(): the prompt is then written directly.
  let inputEnded = false;
  rl.once("close", () => (inputEnded = true));
  const showPrompt = () => (inputEnded ? process.stdout.write("> ") : rl.prompt());
  const stopListening = onInterrupt(onCtrlC);
  try {
    await loaded;
    const history: ChatMessage[] = f.system ? [{ role: "system", content: f.system }] : [];
    console.error(`chatting with ${engine.config.name} (${engine.description}); Ctrl-C stops an answer, Ctrl-D leaves`);
    for (;;) {
      showPrompt();
      const next = await lines.next();
      if (next.done) break;
      const line = next.value;
      if (line.trim() === "") continue;
      history.push({ role: "user", content: line });
      const abort = new AbortController();
      answering = abort;
      let answer = "";
      try {
        const stream = engine.generate(history, {
          maxTokens: f.maxTokens,
          temperature: f.temperature,
          seed: f.seed,
          signal: abort.signal,
        });
        for await (const chunk of stream) {
          answer += chunk.text;
          process.stdout.write(chunk.text);
        }
        // Every turn sends the whole history; the engine's prefix cache finds the pages of
        // the turns before, so only the new tokens are computed. --stats shows it.
        if (f.stats) console.error(`\n${turnStats(await stream.result)}`);
      } catch (e) {
        if (!(e instanceof RequestAbortedError)) throw e;
        process.stdout.write(" [stopped]");
      } finally {
        answering = undefined;
      }
      process.stdout.write("\n");
      history.push({ role: "assistant", content: answer });
    }
    // Leaving at the prompt: end the prompt's line, so the shell's starts on its own.
    process.stdout.write("\n");
    return interrupted ? INTERRUPTED_EXIT_CODE : 0;
  } finally {
    stopListening();
    rl.close();
    await engine.dispose();
  }
});
