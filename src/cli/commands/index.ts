import type { CliCommand } from "../command.ts";
import { benchCommand } from "./bench.ts";
import { chatCommand } from "./chat.ts";
import { generateCommand } from "./generate.ts";
import { inspectCommand } from "./inspect.ts";
import { serveCommand } from "./serve.ts";
import { makeModelCommand } from "./make-model.ts";
import { perplexityCommand } from "./perplexity.ts";
import { tokenizeCommand } from "./tokenize.ts";

/** Every CLI command, in the order `--help` lists them. Add new commands here. */
export const COMMANDS: readonly CliCommand[] = [
  generateCommand,
  chatCommand,
  inspectCommand,
  serveCommand,
  benchCommand,
  makeModelCommand,
  perplexityCommand,
  tokenizeCommand,
];
