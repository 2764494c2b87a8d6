/**
 * Where the CLI looks for a model when no `--model` is given: the tiny llama trained on
 * the fortunes corpus, in `models/` at the repository root.
 */
import { fileURLToPath } from "node:url";

/** The default model's path, relative to the repository root. */
export const DEFAULT_MODEL_RELATIVE = "models/tiny-fortunes-q8_0.gguf";

/** Absolute path of the default model (resolved from this module, not the working directory). */
export const DEFAULT_MODEL_PATH: string = fileURLToPath(new URL(`../../${DEFAULT_MODEL_RELATIVE}`, import.meta.url));
