/**
 * `deno task cli perplexity [--model PATH] --file TEXT [--context N] [--backend cpu|webgpu] [--json]`:
 * the perplexity of a model on a text file, as defined in src/model/perplexity.ts.
 */
import { readFile } from "node:fs/promises";
import process from "node:process";
import { InvalidArgumentError, SourceError } from "../../errors.ts";
import { type GGUFFile, openGGUF } from "../../gguf/reader.ts";
import { defaultPerplexityContext, perplexityOfText, referenceLogitsBackend } from "../../model/perplexity.ts";
import { ReferenceModel } from "../../model/reference.ts";
import { tokenizerFromMetadata } from "../../tokenizer/index.ts";
import { parseArgs } from "../args.ts";
import type { CliCommand } from "../command.ts";
import { DEFAULT_MODEL_PATH, DEFAULT_MODEL_RELATIVE } from "../default-model.ts";

const SPEC = {
  name: "perplexity",
  summary:
    "Perplexity of a model on a text file: the text is tokenized without BOS, cut into windows of N-1 tokens, " +
    "and each window runs as BOS + its tokens, every next-token prediction scored.",
  flags: {
    model: {
      type: "string",
      short: "m",
      placeholder: "path|url",
      description: `GGUF file, first shard, or http(s) URL (default: ${DEFAULT_MODEL_RELATIVE})`,
    },
    file: { type: "string", short: "f", required: true, placeholder: "text-file", description: "the text to score" },
    context: {
      type: "number",
      integer: true,
      min: 2,
      placeholder: "n",
      description: "N, tokens per window including BOS (default: min(model context, 512))",
    },
    backend: { type: "string", default: "cpu", placeholder: "cpu|webgpu", description: "cpu: the f32 reference" },
    json: { type: "boolean", description: "print one JSON object" },
  },
} as const;

/** The `perplexity` command. */
export const perplexityCommand: CliCommand = {
  name: "perplexity",
  summary: "perplexity of a model on a text file",
  async run(args) {
    const parsed = parseArgs(args, SPEC);
    if (parsed.help) {
      console.log(parsed.text);
      return 0;
    }
    const f = parsed.flags;
    if (f.backend === "webgpu") {
      throw new InvalidArgumentError("--backend", "webgpu perplexity is not available yet; use --backend cpu");
    }
    if (f.backend !== "cpu") throw new InvalidArgumentError("--backend", `must be cpu or webgpu, got "${f.backend}"`);
    const text = await readText(f.file);
    const file = await openModel(f.model);
    let model: ReferenceModel;
    let tokenizer: ReturnType<typeof tokenizerFromMetadata>;
    try {
      tokenizer = tokenizerFromMetadata(file.metadata);
      model = await ReferenceModel.load(file);
    } finally {
      await file.close();
    }
    const context = f.context ?? defaultPerplexityContext(model.config.contextLength);
    const started = performance.now();
    const result = await perplexityOfText(text, tokenizer, referenceLogitsBackend(model), {
      modelContextLength: model.config.contextLength,
      context,
      onProgress: progressLine(),
    });
    const seconds = (performance.now() - started) / 1000;
    if (f.json) {
      console.log(JSON.stringify({ model: file.name, file: f.file, backend: f.backend, context, ...result, seconds }));
    } else {
      console.log(
        `perplexity ${result.perplexity.toFixed(4)} (nll ${result.nll.toFixed(4)} nats/token) over ${result.tokens} tokens, ` +
          `context ${context}, ${f.backend}, ${seconds.toFixed(1)} s`,
      );
    }
    return 0;
  },
};

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new SourceError("NOT_FOUND", path, "cannot read the text file", undefined, { cause: err });
  }
}

async function openModel(model: string | undefined): Promise<GGUFFile> {
  try {
    return await openGGUF(model ?? DEFAULT_MODEL_PATH);
  } catch (err) {
    if (model === undefined && err instanceof SourceError && err.code === "NOT_FOUND") {
      throw new SourceError(
        "NOT_FOUND",
        DEFAULT_MODEL_PATH,
        `no --model given, and the default model (${DEFAULT_MODEL_RELATIVE}) has not been built yet; pass --model PATH|URL`,
        undefined,
        { cause: err },
      );
    }
    throw err;
  }
}

/** Window progress on stderr when it is a terminal (so `--json` and pipes stay clean). */
function progressLine(): (done: number, total: number) => void {
  if (!process.stderr.isTTY) return () => {};
  return (done, total) => {
    process.stderr.write(done === total ? "\r\x1b[K" : `\rwindow ${done}/${total}\x1b[K`);
  };
}
