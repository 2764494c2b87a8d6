/**
 * Runs the HTTP server under Deno until SIGINT or SIGTERM, then shuts down in order: stop
 * accepting, let running requests finish for up to a grace period, cancel what is left,
 * stop waiting for connections still open once every response has been sent (a client
 * that stalled mid-body keeps its socket after its 408, and would hold the drain forever;
 * the process's exit closes it), dispose the engine (awaited), and resolve. If the model fails to load, the server stops
 * at once and the load error is thrown: a server that can only answer 500 must not stay up.
 */
import process from "node:process";
import type { Engine } from "../engine/engine.ts";
import { createHandler, isLoopbackHost, type ServerOptions } from "./handler.ts";

/** The part of Deno's API the server uses (typed here so `src/` type-checks anywhere). */
interface DenoServeApi {
  serve(
    options: {
      hostname: string;
      port: number;
      onListen?: (addr: { hostname: string; port: number }) => void;
    },
    handler: (request: Request, info: { completed: Promise<void> }) => Promise<Response>,
  ): { shutdown(): Promise<void>; finished: Promise<void> };
}

/** A promise with its resolve function (Promise.withResolvers is newer than this project's lib target). */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Counts responses not yet fully sent, and tells when there are none. */
class OpenResponses {
  #count = 0;
  #idle = deferred();

  constructor() {
    this.#idle.resolve();
  }

  /** Counts one response until `completed` (Deno's: sent, or failed to send) settles. */
  track(completed: Promise<void>): void {
    if (this.#count++ === 0) this.#idle = deferred();
    const done = () => {
      if (--this.#count === 0) this.#idle.resolve();
    };
    completed.then(done, done);
  }

  /** Resolves once no response is being sent. */
  idle(): Promise<void> {
    return this.#idle.promise;
  }
}

/** How {@link serveUntilSignal} listens and shuts down, besides the handler's options. */
export interface ServeOptions extends Omit<ServerOptions, "cancelAll" | "allowedHosts"> {
  readonly hostname: string;
  readonly port: number;
  /** How long running requests may take to finish after a shutdown signal (default 10 s). */
  readonly gracePeriodMs?: number;
  /**
   * Host names served besides loopback ones while bound to a loopback address (the
   * DNS-rebinding guard, see {@link ServerOptions.allowedHosts}); unused on other addresses.
   */
  readonly allowedHosts?: readonly string[];
  /** Called once the server listens (the CLI prints the address). */
  readonly onListen?: (address: { hostname: string; port: number }) => void;
}

function denoApi(): DenoServeApi {
  const deno = (globalThis as { Deno?: DenoServeApi }).Deno;
  if (!deno?.serve) throw new Error("the HTTP server runs under Deno (deno task cli serve)");
  return deno;
}

/** Resolves with the signal's name when the process receives SIGINT or SIGTERM; `stop` removes the listeners. */
function shutdownSignal(): { received: Promise<string>; stop: () => void } {
  let stop = () => {};
  const received = new Promise<string>((resolve) => {
    const on = (name: string) => () => {
      stop();
      resolve(name);
    };
    const onInt = on("SIGINT");
    const onTerm = on("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
    stop = () => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
    };
  });
  return { received, stop };
}

/** Whether an address to bind is a loopback one (then the Host guard is on). */
function isLoopbackBind(hostname: string): boolean {
  const name = hostname.toLowerCase();
  return isLoopbackHost(name.startsWith("[") ? name : name.includes(":") ? `[${name}]` : name);
}

/**
 * Serves `engine` until a shutdown signal; the engine is disposed before this resolves.
 * Rejects with the load error if the model fails to load (the server stopped first).
 */
export async function serveUntilSignal(engine: Engine, options: ServeOptions): Promise<void> {
  const cancelAll = new AbortController();
  const handler = createHandler(engine, {
    ...options,
    allowedHosts: isLoopbackBind(options.hostname) ? options.allowedHosts ?? [] : undefined,
    cancelAll: cancelAll.signal,
  });
  const open = new OpenResponses();
  const server = denoApi().serve(
    { hostname: options.hostname, port: options.port, onListen: options.onListen },
    (request, info) => {
      open.track(info.completed);
      return handler(request);
    },
  );
  const signal = shutdownSignal();
  const loadFailed = engine.ready.then(() => new Promise<never>(() => {}), (error: unknown) => ({ error }));
  const stop = await Promise.race([signal.received.then((name) => ({ name })), loadFailed]);
  if ("error" in stop) {
    signal.stop();
    try {
      await server.shutdown();
    } finally {
      await engine.dispose();
    }
    throw stop.error;
  }
  console.error(`${stop.name}: shutting down (grace period ${options.gracePeriodMs ?? 10_000} ms)`);
  const drained = server.shutdown();
  drained.catch(() => {}); // not awaited when a stalled connection outlives the grace period
  // A bound on the grace period, not a wait: requests still running when it ends are cancelled.
  const graceOver = deferred();
  const grace = setTimeout(() => {
    cancelAll.abort();
    graceOver.resolve();
  }, options.gracePeriodMs ?? 10_000);
  try {
    // Drained, or past the grace period with every response (cancelled ones included) sent.
    await Promise.race([drained, graceOver.promise.then(() => open.idle())]);
  } finally {
    clearTimeout(grace);
    await engine.dispose();
  }
}
