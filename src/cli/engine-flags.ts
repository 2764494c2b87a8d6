/**
 * The flags every model-running command shares, and the one way the CLI builds an engine
 * from them: through `createEngine`, like every other door.
 */
import { createEngine, type Engine, type EngineOptions } from "../engine/engine.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { FlagSpec } from "./args.ts";
import { modelConfigFromGGUF } from "../model/config.ts";
import { DEFAULT_MODEL_PATH, MODEL_FLAG, openModelFile } from "./default-model.ts";
import { loadProgressBar } from "./progress.ts";

export const ENGINE_FLAGS = {
  model: MODEL_FLAG,
  backend: {
    type: "string",
    default: "webgpu",
    placeholder: "webgpu|cpu",
    description: "webgpu, or cpu (the reference implementation, for checking)",
  },
  webgpu: {
    type: "string",
    default: "auto",
    placeholder: "auto|dawn|deno",
    description: "WebGPU provider: dawn (npm package webgpu), deno (built-in), auto (dawn if it finds an adapter)",
  },
  context: {
    type: "number",
    integer: true,
    min: 1,
    placeholder: "n",
    description: "most tokens one sequence may hold, at most the model's (default: the model's, capped at 8192)",
  },
  kvBudget: {
    type: "number",
    min: 0,
    placeholder: "MiB",
    description: "memory of the KV pool shared by all sequences (default: chosen from the device's limits)",
  },
  lookahead: {
    type: "number",
    integer: true,
    min: 1,
    placeholder: "n",
    description: "decode steps submitted before one readback (default 8)",
  },
  readTimeout: {
    type: "number",
    min: 0,
    default: 30,
    placeholder: "s",
    description: "URL models: give up when no bytes arrive for this long (0 = never)",
  },
  matvecShape: {
    type: "string",
    default: "auto",
    placeholder: "auto|blocks|workgroup|lanes",
    description: "matrix-vector kernel shape (tuning; auto picks per adapter)",
  },
} as const satisfies Record<string, FlagSpec>;

/** Parsed values of {@link ENGINE_FLAGS}. */
export interface EngineFlagValues {
  readonly model: string | undefined;
  readonly backend: string;
  readonly webgpu: string;
  readonly context: number | undefined;
  readonly kvBudget: number | undefined;
  readonly lookahead: number | undefined;
  readonly readTimeout: number;
  readonly matvecShape: string;
}

/** Creates the engine the flags describe, with a progress bar on a terminal. */
export function engineFromFlags(
  flags: EngineFlagValues,
  extra: EngineOptions = {},
): { engine: Engine; loaded: Promise<void> } {
  if (flags.backend !== "webgpu" && flags.backend !== "cpu") {
    throw new InvalidArgumentError("--backend", `must be webgpu or cpu, got "${flags.backend}"`);
  }
  if (flags.webgpu !== "auto" && flags.webgpu !== "dawn" && flags.webgpu !== "deno") {
    throw new InvalidArgumentError("--webgpu", `must be auto, dawn or deno, got "${flags.webgpu}"`);
  }
  const shape = flags.matvecShape;
  if (shape !== "auto" && shape !== "blocks" && shape !== "workgroup" && shape !== "lanes") {
    throw new InvalidArgumentError("--matvec-shape", `must be auto, blocks, workgroup or lanes, got "${shape}"`);
  }
  const progress = loadProgressBar();
  const source = flags.model ?? DEFAULT_MODEL_PATH;
  const engine = createEngine(source, {
    backend: flags.backend,
    webgpu: flags.webgpu,
    contextLength: flags.context,
    kvCacheBytes: flags.kvBudget === undefined ? undefined : Math.floor(flags.kvBudget * 2 ** 20),
    lookahead: flags.lookahead,
    readTimeoutMs: flags.readTimeout === 0 ? Infinity : flags.readTimeout * 1000,
    matvecShape: shape,
    onProgress: progress.onProgress,
    ...extra,
  });
  // Checked beside the load, from the file's header: a refusal comes before the weights
  // are read, and rejecting `loaded` makes the command dispose the engine (ending its load).
  const contextFits = flags.context === undefined ? Promise.resolve() : checkContextFits(source, flags.context);
  // The engine refuses such a context too, by its option's name; when both fail, the
  // user reads the flag's error (the check is one header read, so it is waited for).
  const ready = engine.ready.catch(async (error: unknown) => {
    await contextFits;
    throw error;
  });
  const loaded = Promise.all([ready, contextFits]).then(() => {}).finally(progress.done);
  loaded.catch(() => {});
  return { engine, loaded };
}

/**
 * Refuses a `--context` longer than the model was trained for (the engine would quietly
 * use the model's instead, and positions past it are outside what the model learned).
 */
async function checkContextFits(source: string, context: number): Promise<void> {
  let trained: number;
  try {
    const file = await openModelFile(source);
    try {
      trained = modelConfigFromGGUF(file).contextLength;
    } finally {
      await file.close();
    }
  } catch {
    return; // An unreadable model: the engine's load fails and says why.
  }
  if (context > trained) {
    throw new InvalidArgumentError(
      "--context",
      `${context} is more than the model's trained context of ${trained} tokens; give at most ${trained}, or leave it out`,
    );
  }
}
