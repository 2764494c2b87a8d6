/** One CLI command: its name, a one-line summary for the command list, and its entry. */
export interface CliCommand {
  readonly name: string;
  readonly summary: string;
  /** Runs the command with the arguments after its name; resolves to the exit code. */
  run(args: string[]): Promise<number>;
}
