/**
 * `deno task cli <command> ...`: the command-line door. Each command lives in its own
 * module under `commands/`; this file only dispatches and turns errors into one line.
 */
import process from "node:process";
import { LlmError } from "../errors.ts";
import type { CliCommand } from "./command.ts";
import { COMMANDS } from "./commands/index.ts";

function usage(): string {
  const lines = ["usage: deno task cli <command> [options]", "", "commands:"];
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(12)} ${c.summary}`);
  lines.push("", "Run `deno task cli <command> --help` for a command's options.");
  return lines.join("\n");
}

export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const command: CliCommand | undefined = COMMANDS.find((c) => c.name === name);
  if (!command) {
    console.error(`error: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    console.error(`error: ${describeError(err)}`);
    return 1;
  }
}

function describeError(err: unknown): string {
  if (err instanceof LlmError) return `${err.message} [${err.code}]`;
  if (err instanceof Error) return err.message;
  return String(err);
}

// Entry point under Deno (`deno task cli`) and Node alike. Exit explicitly: every engine a
// command created has been disposed and awaited by now, and the exit code must not wait
// on a GPU runtime's idle handles.
if (
  import.meta.url === `file://${process.argv[1]}` ||
  (globalThis as { Deno?: { mainModule?: string } }).Deno?.mainModule === import.meta.url
) {
  process.exit(await main(process.argv.slice(2)));
}
