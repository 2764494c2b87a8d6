/** Starts `deno task cli serve` as a real process on a free loopback port, for tests. */

export interface ServerProcess {
  readonly url: string;
  readonly process: Deno.ChildProcess;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** Sends a signal and resolves with the exit status. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

const ROOT = new URL("../../../", import.meta.url);

/** Spawns the server with `args` after `serve`, and resolves once it listens. */
export async function startServer(args: readonly string[]): Promise<ServerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/cli/main.ts", "serve", "--port", "0", ...args],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp" },
  }).spawn();
  let text = "";
  let listening: (url: string) => void = () => {};
  let failed: (e: Error) => void = () => {};
  const ready = new Promise<string>((resolve, reject) => {
    listening = resolve;
    failed = reject;
  });
  // Keep draining stderr for the life of the process, so the pipe never fills up.
  (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      text += decoder.decode(chunk, { stream: true });
      const m = /listening on (http:\/\/[^\s]+)/.exec(text);
      if (m) listening(m[1]!);
    }
    failed(new Error(`the server exited before listening:\n${text}`));
  })();
  const url = await ready;
  let status: Promise<Deno.CommandStatus> | undefined;
  return {
    url,
    process: child,
    stderr: () => text,
    stop(signal: Deno.Signal = "SIGTERM") {
      if (!status) {
        child.kill(signal);
        status = child.status;
      }
      return status;
    },
  };
}
