/**
 * `deno task cli perplexity [--model PATH] --file TEXT [--context N] [--backend cpu|webgpu] [--json]`:
 * the perplexity of a model on a text file, as defined in src/model/perplexity.ts.
 */
import { readFile } from "node:fs/promises";
import process from "node:process";
import { SourceError } from "../../errors.ts";
import { defaultPerplexityContext, type LogitsBackend, perplexityOfText } from "../../model/perplexity.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { DEFAULT_MODEL_PATH } from "../default-model.ts";
import { ENGINE_FLAGS, engineFromFlags } from "../engine-flags.ts";

// `--context` here is the perplexity window, not the engine's context per sequence.
const { context: _engineContext, ...RUN_FLAGS } = ENGINE_FLAGS;

const SPEC = {
  name: "perplexity",
  summary: "Perplexity of a model on a text file: the text is tokenized without BOS, cut into windows of N-1 tokens, " +
    "and each window runs as BOS + its tokens, every next-token prediction scored.",
  flags: {
    ...RUN_FLAGS,
    file: { type: "string", short: "f", required: true, placeholder: "text-file", description: "the text to score" },
    context: {
      type: "number",
      integer: true,
      min: 2,
      placeholder: "n",
      description: "N, tokens per window including BOS (default: min(model context, 512))",
    },
    json: { type: "boolean", description: "print one JSON object" },
  },
} as const;

/** The `perplexity` command. */
export const perplexityCommand: CliCommand = defineCommand(SPEC, "perplexity of a model on a text file", async (f) => {
  const text = await readText(f.file);
  // The same engine as every other door; its `logits()` runs whichever backend was chosen.
  const { engine, loaded } = engineFromFlags({ ...f, context: undefined }, {
    maxSequences: 1,
    maxBatchTokens: 512,
  });
  try {
    await loaded;
    const modelContextLength = engine.limits.contextLength;
    const context = f.context ?? defaultPerplexityContext(modelContextLength);
    const backend: LogitsBackend = { forwardAll: (ids) => engine.logits(ids) };
    const started = performance.now();
    const result = await perplexityOfText(text, engine.tokenizer, backend, {
      modelContextLength,
      context,
      onProgress: progressLine(),
    });
    const seconds = (performance.now() - started) / 1000;
    if (f.json) {
      console.log(
        JSON.stringify({
          model: f.model ?? DEFAULT_MODEL_PATH,
          file: f.file,
          backend: f.backend,
          context,
          ...result,
          seconds,
        }),
      );
    } else {
      console.log(
        `perplexity ${result.perplexity.toFixed(4)} (nll ${
          result.nll.toFixed(4)
        } nats/token) over ${result.tokens} tokens, ` +
          `context ${context}, ${engine.description}, ${seconds.toFixed(1)} s`,
      );
    }
    return 0;
  } finally {
    await engine.dispose();
  }
});

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new SourceError("NOT_FOUND", path, "cannot read the text file", undefined, { cause: err });
  }
}

/** Window progress on stderr when it is a terminal (so `--json` and pipes stay clean). */
function progressLine(): (done: number, total: number) => void {
  if (!process.stderr.isTTY) return () => {};
  return (done, total) => {
    process.stderr.write(done === total ? "\r\x1b[K" : `\rwindow ${done}/${total}\x1b[K`);
  };
}
