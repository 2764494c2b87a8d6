/**
 * Where the CLI looks for a model when no `--model` is given: the tiny llama trained on
 * the fortunes corpus, in `models/` at the repository root.
 */
import { fileURLToPath } from "node:url";
import { SourceError } from "../errors.ts";
import { type GGUFFile, openGGUF } from "../gguf/reader.ts";

/** The default model's path, relative to the repository root. */
export const DEFAULT_MODEL_RELATIVE = "models/tiny-fortunes-q8_0.gguf";

/** Absolute path of the default model (resolved from this module, not the working directory). */
export const DEFAULT_MODEL_PATH: string = fileURLToPath(new URL(`../../${DEFAULT_MODEL_RELATIVE}`, import.meta.url));

/** The `--model` flag every command that reads a model takes. */
export const MODEL_FLAG = {
  type: "string",
  short: "m",
  placeholder: "path|url",
  description: `GGUF file, first shard, or http(s) URL (default: ${DEFAULT_MODEL_RELATIVE})`,
} as const;

/**
 * Opens `model`, or the default model when none is given; a default model that is not
 * there gets a message saying so rather than a bare "not found".
 */
export async function openModelFile(model: string | undefined): Promise<GGUFFile> {
  try {
    return await openGGUF(model ?? DEFAULT_MODEL_PATH);
  } catch (err) {
    if (model === undefined && err instanceof SourceError && err.code === "NOT_FOUND") {
      throw new SourceError(
        "NOT_FOUND",
        DEFAULT_MODEL_PATH,
        `no --model given, and the default model (${DEFAULT_MODEL_RELATIVE}) is missing; pass --model PATH|URL`,
        undefined,
        { cause: err },
      );
    }
    throw err;
  }
}
