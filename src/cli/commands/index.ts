import type { CliCommand } from "../command.ts";

/** Every CLI command, in the order `--help` lists them. Add new commands here. */
export const COMMANDS: readonly CliCommand[] = [];
