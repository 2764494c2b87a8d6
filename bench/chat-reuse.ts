/**
 * Benchmark script (not a test): the time to first token of each turn of a multi-turn
 * chat, with the prefix cache (the turns before are reused from the KV pool) and without
 * (every turn prefills the whole history again).
 *
 *   deno run -A bench/chat-reuse.ts [--model M] [--turns 10] [--answer-tokens 32]
 *       [--backend webgpu|cpu] [--webgpu auto|dawn|deno] [--json]
 *
 * Each turn sends the whole conversation (as every chat client does): the model's chat
 * template where it has one, else a plain "User:/Assistant:" transcript. Answers are
 * greedy and `--answer-tokens` long (end-of-generation ignored), so both runs feed the
 * same tokens and only the reuse differs. One engine per mode, loaded before timing.
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type Engine, loadEngine } from "../src/engine/engine.ts";
import type { ChatMessage, GenerationResult } from "../src/engine/types.ts";

/** Short turns, so that 10 of them fit the embedded model's 256-token context. */
const USER_TURNS = [
  "Tell me about the lighthouse.",
  "Who kept it?",
  "And the storm?",
  "Who was rescued?",
  "What ship?",
  "Then what?",
  "And the village?",
  "Any songs?",
  "The winter?",
  "How does it end?",
];

interface TurnFigure {
  readonly turn: number;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly ttftMs: number;
}

const { values: flags } = parseArgs({
  options: {
    model: { type: "string" },
    turns: { type: "string", default: "10" },
    "answer-tokens": { type: "string", default: "8" },
    backend: { type: "string", default: "webgpu" },
    webgpu: { type: "string", default: "auto" },
    json: { type: "boolean", default: false },
  },
});
const model = flags.model ?? fileURLToPath(new URL("../models/tiny-fortunes-q8_0.gguf", import.meta.url));
const turns = Number(flags.turns);
const answerTokens = Number(flags["answer-tokens"]);
if (!Number.isInteger(turns) || turns < 1) throw new Error(`--turns must be a positive integer, got ${flags.turns}`);
if (!Number.isInteger(answerTokens) || answerTokens < 1) throw new Error(`--answer-tokens must be a positive integer`);

/** The conversation as the engine gets it: chat messages, or a transcript for models without a template. */
function turnInput(history: readonly ChatMessage[], chat: boolean): string | ChatMessage[] {
  if (chat) return [...history];
  return history.map((m) => `${m.role === "user" ? "User" : "Assistant"}: ${m.content}\n`).join("") + "Assistant:";
}

/**
 * Whether the model renders chat messages (a one-token answer to "hi"; NO_CHAT_TEMPLATE
 * otherwise). It also warms the engine's pipelines up before anything is timed.
 */
async function rendersChat(engine: Engine): Promise<boolean> {
  const probe = engine.generate([{ role: "user", content: "hi" }], { maxTokens: 1, temperature: 0 });
  return await probe.result.then(() => true, () => false);
}

async function runChat(prefixCache: boolean, turns: number): Promise<{ figures: TurnFigure[]; description: string; pool: string }> {
  const engine = await loadEngine(model, {
    backend: flags.backend as "webgpu" | "cpu",
    webgpu: flags.webgpu as "auto" | "dawn" | "deno",
    maxSequences: 1,
    prefixCache,
  });
  try {
    const chat = await rendersChat(engine);
    const history: ChatMessage[] = [];
    const figures: TurnFigure[] = [];
    for (let t = 0; t < turns; t++) {
      history.push({ role: "user", content: USER_TURNS[t % USER_TURNS.length]! });
      const result: GenerationResult = await engine.generate(turnInput(history, chat), {
        temperature: 0,
        maxTokens: answerTokens,
        ignoreEos: true,
      }).result;
      history.push({ role: "assistant", content: result.text });
      figures.push({
        turn: t + 1,
        promptTokens: result.usage.promptTokens,
        cachedTokens: result.usage.cachedTokens,
        ttftMs: result.timings.timeToFirstTokenMs,
      });
    }
    const p = engine.kvPool;
    return {
      figures,
      description: engine.description,
      pool: `${(p.bytes / 2 ** 20).toFixed(1)} MiB, ${p.pageCount} pages of ${p.pageSize}; context ${engine.limits.contextLength}`,
    };
  } finally {
    await engine.dispose();
  }
}

// A discarded run first, so that neither measured mode pays for the process's warm-up (JIT, driver).
await runChat(true, 2);
const without = await runChat(false, turns);
const withReuse = await runChat(true, turns);
if (flags.json) {
  console.log(JSON.stringify({ model, adapter: withReuse.description, pool: withReuse.pool, turns, answerTokens, without: without.figures, with: withReuse.figures }));
} else {
  console.log(`${model} on ${withReuse.description}; KV pool ${withReuse.pool}`);
  console.log(`${turns} turns, ${answerTokens}-token greedy answers; time to first token of each turn`);
  console.log("turn  prompt  reused   TTFT without   TTFT with reuse");
  for (let i = 0; i < turns; i++) {
    const a = without.figures[i]!;
    const b = withReuse.figures[i]!;
    console.log(
      `${String(a.turn).padStart(4)}  ${String(b.promptTokens).padStart(6)}  ${String(b.cachedTokens).padStart(6)}  ` +
        `${a.ttftMs.toFixed(0).padStart(10)} ms  ${b.ttftMs.toFixed(0).padStart(13)} ms`,
    );
  }
  const sum = (f: TurnFigure[]) => f.reduce((s, x) => s + x.ttftMs, 0);
  console.log(`total TTFT: ${sum(without.figures).toFixed(0)} ms without, ${sum(withReuse.figures).toFixed(0)} ms with reuse`);
}
