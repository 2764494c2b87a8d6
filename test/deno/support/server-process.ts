/** Starts `deno task cli serve` as a real process on a free loopback port, for tests. */

export interface ServerProcess {
  readonly url: string;
  readonly process: Deno.ChildProcess;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** Sends a signal and resolves with the exit status. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** A serve process that may or may not get as far as listening. */
export interface SpawnedServer {
  readonly process: Deno.ChildProcess;
  /** Resolves with the base URL once it listens; rejects if it exits first. */
  readonly listening: Promise<string>;
  /** The exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Everything the server wrote to stderr so far (all of it once `status` settled and `drained` resolved). */
  stderr(): string;
  /** Resolves once stderr reached its end. */
  readonly drained: Promise<void>;
}

const ROOT = new URL("../../../", import.meta.url);

/** Spawns `serve` with `args` (after `--port 0`), without waiting for anything. */
export function spawnServer(args: readonly string[]): SpawnedServer {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/cli/main.ts", "serve", "--port", "0", ...args],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp" },
  }).spawn();
  let text = "";
  const listening = Promise.withResolvers<string>();
  listening.promise.catch(() => {});
  // Keep draining stderr for the life of the process, so the pipe never fills up.
  const drained = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      text += decoder.decode(chunk, { stream: true });
      const m = /listening on (http:\/\/[^\s]+)/.exec(text);
      if (m) listening.resolve(m[1]!);
    }
    listening.reject(new Error(`the server exited before listening:\n${text}`));
  })();
  return { process: child, listening: listening.promise, status: child.status, stderr: () => text, drained };
}

/** Spawns the server with `args` after `serve`, and resolves once it listens. */
export async function startServer(args: readonly string[]): Promise<ServerProcess> {
  const spawned = spawnServer(args);
  const url = await spawned.listening;
  let status: Promise<Deno.CommandStatus> | undefined;
  return {
    url,
    process: spawned.process,
    stderr: spawned.stderr,
    stop(signal: Deno.Signal = "SIGTERM") {
      if (!status) {
        spawned.process.kill(signal);
        status = spawned.status.then(async (s) => {
          await spawned.drained;
          return s;
        });
      }
      return status;
    },
  };
}

/**
 * A raw HTTP/1.1 exchange over TCP, for what a well-behaved client never sends (a forged
 * Host, a body that stalls). Write parts with `send`; `response` reads one response: up to
 * its `content-length`, or, without one, until the server closes the connection.
 */
export interface RawConnection {
  send(text: string): Promise<void>;
  response(): Promise<string>;
  close(): void;
}

/** Whether `text` holds a whole response with a `content-length` body. */
function completeResponse(text: string): boolean {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const length = /^content-length:\s*(\d+)\s*$/im.exec(text.slice(0, end));
  return length !== null && new TextEncoder().encode(text.slice(end + 4)).length >= Number(length[1]);
}

export async function rawConnection(url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  let closed = false;
  return {
    async send(text) {
      await conn.write(new TextEncoder().encode(text));
    },
    async response() {
      let text = "";
      const decoder = new TextDecoder();
      const buffer = new Uint8Array(16 << 10);
      while (!completeResponse(text)) {
        const n = await conn.read(buffer).catch(() => null); // a reset ends the response too
        if (n === null) break;
        text += decoder.decode(buffer.subarray(0, n), { stream: true });
      }
      return text;
    },
    close() {
      if (closed) return;
      closed = true;
      conn.close();
    },
  };
}
