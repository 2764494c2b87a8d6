/**
 * `deno task cli inspect [--model PATH|URL] [--json] [--load]`: what a GGUF file holds, read
 * from its header only (no tensor data is fetched, so it is quick on a URL too). With
 * `--load`, the model is also loaded on the chosen backend, to show what the runtime picks
 * for it there: the context one sequence may hold and the KV pool (bytes, pages).
 */
import { LlmError } from "../../errors.ts";
import { ggmlTypeName } from "../../gguf/ggml-type.ts";
import type { GGUFFile } from "../../gguf/reader.ts";
import { ARCHITECTURES, isArchitecture } from "../../model/arch/index.ts";
import { type ModelConfig, modelConfigFromGGUF } from "../../model/config.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { openModelFile } from "../default-model.ts";
import { ENGINE_FLAGS, engineFromFlags, type EngineFlagValues } from "../engine-flags.ts";
import { formatBytes } from "../format.ts";

export { formatBytes };

/** Bytes and counts of the tensors of one GGML type. */
export interface QuantMixEntry {
  readonly type: string;
  readonly tensors: number;
  readonly parameters: number;
  readonly bytes: number;
}

/** What `inspect` reports (its `--json` output). */
export interface ModelSummary {
  readonly file: string;
  readonly fileSize: number;
  readonly shards: number;
  readonly ggufVersion: number;
  readonly architecture: string | null;
  /** The family's layer in a line (src/model/arch/), or null when the runtime does not run this architecture. */
  readonly family: string | null;
  readonly name: string | null;
  readonly parameterCount: number;
  readonly tensorCount: number;
  /** Largest share first. */
  readonly quantMix: readonly QuantMixEntry[];
  /** `tokenizer.ggml.model` (`llama`, `gpt2`, ...), or null without a tokenizer. */
  readonly tokenizer: string | null;
  readonly vocabSize: number | null;
  readonly contextLength: number | null;
  readonly chatTemplate: boolean;
  /** The runtime's view of the model, or why it cannot run it. */
  readonly config: ModelConfig | null;
  readonly configError: string | null;
}

/** What the runtime chose for the model on a backend (`inspect --load`). */
export interface RuntimeSummary {
  /** Backend, provider and adapter. */
  readonly description: string;
  /** Most tokens one sequence may hold. */
  readonly contextLength: number;
  /** Sequences run at once. */
  readonly maxSequences: number;
  /** The KV pool all sequences share. */
  readonly kvPool: { readonly bytes: number; readonly pageCount: number; readonly pageSize: number };
}

function optionalString(file: GGUFFile, key: string): string | null {
  const v = file.metadata[key];
  return typeof v === "string" ? v : null;
}

function optionalNumber(file: GGUFFile, key: string): number | null {
  const v = file.metadata[key];
  if (typeof v === "number") return v;
  return typeof v === "bigint" ? Number(v) : null;
}

/** Summarizes an open file from its header. */
export function summarizeModel(file: GGUFFile): ModelSummary {
  const mix = new Map<string, { tensors: number; parameters: number; bytes: number }>();
  for (const t of file.tensors) {
    const name = ggmlTypeName(t.type);
    const entry = mix.get(name) ?? { tensors: 0, parameters: 0, bytes: 0 };
    entry.tensors++;
    entry.parameters += t.nElements;
    entry.bytes += t.byteLength;
    mix.set(name, entry);
  }
  const architecture = optionalString(file, "general.architecture");
  const tokens = file.metadata["tokenizer.ggml.tokens"];
  let config: ModelConfig | null = null;
  let configError: string | null = null;
  try {
    config = modelConfigFromGGUF(file);
  } catch (err) {
    if (!(err instanceof LlmError)) throw err;
    configError = err.message;
  }
  return {
    file: file.name,
    fileSize: file.fileSize,
    shards: file.shardCount,
    ggufVersion: file.version,
    architecture,
    family: architecture !== null && isArchitecture(architecture) ? ARCHITECTURES[architecture].summary : null,
    name: optionalString(file, "general.name"),
    parameterCount: file.tensors.reduce((sum, t) => sum + t.nElements, 0),
    tensorCount: file.tensors.length,
    quantMix: [...mix].map(([type, e]) => ({ type, ...e })).sort((a, b) => b.bytes - a.bytes),
    tokenizer: optionalString(file, "tokenizer.ggml.model"),
    vocabSize: Array.isArray(tokens) ? tokens.length : null,
    contextLength: architecture === null ? null : optionalNumber(file, `${architecture}.context_length`),
    chatTemplate: typeof file.metadata["tokenizer.chat_template"] === "string",
    config,
    configError,
  };
}

/** `1234567` → `1.23 M`. */
function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

function formatText(s: ModelSummary): string {
  const lines = [
    `file:           ${s.file}${s.shards > 1 ? ` (${s.shards} shards)` : ""}`,
    `size:           ${formatBytes(s.fileSize)} (${s.fileSize} bytes), GGUF v${s.ggufVersion}`,
    `name:           ${s.name ?? "(none)"}`,
    `architecture:   ${s.architecture ?? "(none)"}`,
    `family:         ${s.family ?? "(not supported by this runtime)"}`,
    `parameters:     ${formatCount(s.parameterCount)} (${s.parameterCount}) in ${s.tensorCount} tensors`,
    `context length: ${s.contextLength ?? "(unknown)"}`,
    `tokenizer:      ${s.tokenizer ?? "(none)"}${s.vocabSize === null ? "" : `, ${s.vocabSize} tokens`}`,
    `chat template:  ${s.chatTemplate ? "yes" : "no"}`,
    "quant mix:",
  ];
  for (const q of s.quantMix) {
    const share = s.fileSize > 0 ? ((100 * q.bytes) / s.fileSize).toFixed(1) : "0";
    lines.push(
      `  ${q.type.padEnd(6)} ${String(q.tensors).padStart(5)} tensors  ${formatBytes(q.bytes).padStart(10)}  ${share}%`,
    );
  }
  if (s.config) {
    const c = s.config;
    lines.push(
      `model:          ${c.nLayers} layers, n_embd ${c.nEmbd}, ${c.nHeads} heads (${c.nKvHeads} kv) of ${c.headDim}, ` +
        `n_ff ${c.nFf}, rope ${c.rope.layout} base ${c.rope.base}`,
    );
  } else {
    lines.push(`runnable:       no: ${s.configError}`);
  }
  return lines.join("\n");
}

function formatRuntime(r: RuntimeSummary): string {
  const pool = r.kvPool;
  return [
    `runtime:        ${r.description}`,
    `context:        ${r.contextLength} tokens per sequence, ${r.maxSequences} sequences at once`,
    `KV pool:        ${formatBytes(pool.bytes)} in ${pool.pageCount} pages of ${pool.pageSize} positions ` +
    `(${pool.pageCount * pool.pageSize} positions, shared by all sequences)`,
  ].join("\n");
}

/** Loads the model as the flags say and reports what the runtime chose; disposes it again. */
async function runtimeSummary(flags: EngineFlagValues): Promise<RuntimeSummary> {
  const { engine, loaded } = engineFromFlags(flags);
  try {
    await loaded;
    const limits = engine.limits;
    return {
      description: engine.description,
      contextLength: limits.contextLength,
      maxSequences: limits.maxSequences,
      kvPool: engine.kvPool,
    };
  } finally {
    await engine.dispose();
  }
}

/** The `inspect` command. */
const SPEC = {
  name: "inspect",
  summary: "Shows what a GGUF model holds, from its header (no tensor data is read unless --load).",
  flags: {
    ...ENGINE_FLAGS,
    json: { type: "boolean", description: "print one JSON object instead of text" },
    load: {
      type: "boolean",
      description: "also load the model on the backend and show the context and KV pool chosen for it",
    },
  },
} as const;

export const inspectCommand: CliCommand = defineCommand(
  SPEC,
  "show a GGUF model's architecture, size, quant mix and tokenizer (--load: context and KV pool)",
  async (f) => {
    const file = await openModelFile(f.model);
    let summary: ModelSummary;
    try {
      summary = summarizeModel(file);
    } finally {
      await file.close();
    }
    const runtime = f.load ? await runtimeSummary(f) : undefined;
    if (f.json) console.log(JSON.stringify(runtime ? { ...summary, runtime } : summary, null, 2));
    else console.log(runtime ? `${formatText(summary)}\n${formatRuntime(runtime)}` : formatText(summary));
    return 0;
  },
);
