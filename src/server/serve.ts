/**
 * Runs the HTTP server under Deno until SIGINT or SIGTERM, then shuts down in order: stop
 * accepting, let running requests finish for up to a grace period, cancel what is left,
 * dispose the engine (awaited), and resolve.
 */
import process from "node:process";
import type { Engine } from "../engine/engine.ts";
import { createHandler, type ServerOptions } from "./handler.ts";

/** The part of Deno's API the server uses (typed here so `src/` type-checks anywhere). */
interface DenoServeApi {
  serve(
    options: { hostname: string; port: number; onListen?: (addr: { hostname: string; port: number }) => void },
    handler: (request: Request) => Promise<Response>,
  ): { shutdown(): Promise<void>; finished: Promise<void> };
}

export interface ServeOptions extends Omit<ServerOptions, "cancelAll"> {
  readonly hostname: string;
  readonly port: number;
  /** How long running requests may take to finish after a shutdown signal (default 10 s). */
  readonly gracePeriodMs?: number;
  /** Called once the server listens (the CLI prints the address). */
  readonly onListen?: (address: { hostname: string; port: number }) => void;
}

function denoApi(): DenoServeApi {
  const deno = (globalThis as { Deno?: DenoServeApi }).Deno;
  if (!deno?.serve) throw new Error("the HTTP server runs under Deno (deno task cli serve)");
  return deno;
}

/** Resolves when the process receives SIGINT or SIGTERM. */
function shutdownSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (name: string) => () => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      resolve(name);
    };
    const onInt = on("SIGINT");
    const onTerm = on("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
  });
}

/** Serves `engine` until a shutdown signal; the engine is disposed before this resolves. */
export async function serveUntilSignal(engine: Engine, options: ServeOptions): Promise<void> {
  const cancelAll = new AbortController();
  const handler = createHandler(engine, { ...options, cancelAll: cancelAll.signal });
  const server = denoApi().serve(
    { hostname: options.hostname, port: options.port, onListen: options.onListen },
    handler,
  );
  const signal = await shutdownSignal();
  console.error(`${signal}: shutting down (grace period ${options.gracePeriodMs ?? 10_000} ms)`);
  const drained = server.shutdown();
  // A bound on the grace period, not a wait: requests still running when it ends are cancelled.
  const grace = setTimeout(() => cancelAll.abort(), options.gracePeriodMs ?? 10_000);
  try {
    await drained;
  } finally {
    clearTimeout(grace);
    await engine.dispose();
  }
}
