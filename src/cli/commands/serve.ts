/** `deno task cli serve`: the OpenAI-compatible HTTP server. */
import { basename } from "node:path";
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
  const { engine, loaded } = engineFromFlags(f, { maxSequences: f.maxSequences ?? 8 });
  loaded.then(
    () => console.error(`model loaded: ${engine.description}`),
    (e) => console.error(`error: the model could not be loaded: ${e instanceof Error ? e.message : String(e)}`),
  );
  await serveUntilSignal(engine, {
    hostname: f.host,
    port: f.port,
    modelId: basename(f.model ?? DEFAULT_MODEL_PATH).replace(/\.gguf$/i, ""),
    apiKey: f.apiKey,
    maxConcurrency: f.maxConcurrency,
    allowedOrigins: f.corsOrigin,
    gracePeriodMs: f.gracePeriod * 1000,
    onListen: ({ hostname, port }) => console.error(`listening on http://${hostname}:${port}`),
  });
  return 0;
});
