/** `deno task cli serve`: the OpenAI-compatible HTTP server. */
import { basename } from "node:path";
import { InvalidArgumentError } from "../../errors.ts";
import { serveUntilSignal } from "../../server/serve.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { DEFAULT_MODEL_PATH } from "../default-model.ts";
import { ENGINE_FLAGS, engineFromFlags } from "../engine-flags.ts";

const SPEC = {
  name: "serve",
  summary: "Serves the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, ...).",
  flags: {
    ...ENGINE_FLAGS,
    host: {
      type: "string",
      default: "127.0.0.1",
      placeholder: "addr",
      description: "address to bind",
    },
    port: {
      type: "number",
      integer: true,
      min: 0,
      max: 65535,
      default: 8080,
      placeholder: "n",
      description: "port (0 = any free one)",
    },
    apiKey: {
      type: "string",
      placeholder: "key",
      description: "require Authorization: Bearer KEY on every endpoint but /health",
    },
    maxConcurrency: {
      type: "number",
      integer: true,
      min: 1,
      placeholder: "n",
      description: "completion requests accepted at once, queued ones included; more get 429 (default 64)",
    },
    maxSequences: {
      type: "number",
      integer: true,
      min: 1,
      placeholder: "n",
      description: "sequences generated together (default 8)",
    },
    corsOrigin: {
      type: "strings",
      placeholder: "origin",
      description: "allow this origin by CORS (repeat; * for any); off by default",
    },
    bodyTimeout: {
      type: "number",
      min: 0.001,
      default: 30,
      placeholder: "s",
      description: "seconds a client may pause while sending a request body before it gets 408 (default 30)",
    },
    allowedHost: {
      type: "strings",
      placeholder: "name",
      description: "while bound to loopback, also serve requests with this Host (repeat); others than " +
        "localhost, 127.x.x.x, [::1] get 403 (DNS-rebinding guard)",
    },
    gracePeriod: {
      type: "number",
      min: 0,
      default: 10,
      placeholder: "s",
      description: "seconds running requests may take to finish on SIGINT/SIGTERM",
    },
  },
} as const;

export const serveCommand: CliCommand = defineCommand(SPEC, "serve an OpenAI-compatible HTTP API", async (f) => {
  if (f.apiKey !== undefined && f.apiKey.trim() === "") {
    // `--api-key "$KEY"` with $KEY unset must not start a server without authentication.
    throw new InvalidArgumentError(
      "--api-key",
      "is empty; give a non-empty key, or leave the flag out to serve without one",
    );
  }
  const { engine, loaded } = engineFromFlags(f, { maxSequences: f.maxSequences ?? 8 });
  // A load failure ends serveUntilSignal with the error, which main prints; nothing to add here.
  loaded.then(() => console.error(`model loaded: ${engine.description}`), () => {});
  await serveUntilSignal(engine, {
    hostname: f.host,
    port: f.port,
    modelId: basename(f.model ?? DEFAULT_MODEL_PATH).replace(/\.gguf$/i, ""),
    modelPath: f.model ?? DEFAULT_MODEL_PATH,
    apiKey: f.apiKey,
    maxConcurrency: f.maxConcurrency,
    allowedOrigins: f.corsOrigin,
    gracePeriodMs: f.gracePeriod * 1000,
    bodyTimeoutMs: f.bodyTimeout * 1000,
    allowedHosts: f.allowedHost,
    onListen: ({ hostname, port }) => console.error(`listening on http://${hostname}:${port}`),
  });
  return 0;
});
