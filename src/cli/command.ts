import { type CommandSpec, type FlagSpec, parseArgs, type ParsedFlags } from "./args.ts";

/** One CLI command: its name, a one-line summary for the command list, and its entry. */
export interface CliCommand {
  readonly name: string;
  readonly summary: string;
  /** Runs the command with the arguments after its name; resolves to the exit code. */
  run(args: string[]): Promise<number>;
}

/**
 * A command from its argument spec and its body: `--help` prints the help derived from the
 * spec, anything else reaches `run` parsed and typed.
 */
export function defineCommand<const F extends Readonly<Record<string, FlagSpec>>>(
  spec: CommandSpec<F>,
  summary: string,
  run: (flags: ParsedFlags<F>, positionals: string[]) => Promise<number>,
): CliCommand {
  return {
    name: spec.name,
    summary,
    run(args) {
      const parsed = parseArgs(args, spec);
      if (parsed.help) {
        console.log(parsed.text);
        return Promise.resolve(0);
      }
      return run(parsed.flags, parsed.positionals);
    },
  };
}
