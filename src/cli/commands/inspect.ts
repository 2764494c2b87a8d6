/**
 * `deno task cli inspect [--model PATH|URL] [--json]`: what a GGUF file holds, read from
 * its header only (no tensor data is fetched, so it is quick on a URL too).
 */
import { LlmError } from "../../errors.ts";
import { ggmlTypeName } from "../../gguf/ggml-type.ts";
import type { GGUFFile } from "../../gguf/reader.ts";
import { type ModelConfig, modelConfigFromGGUF } from "../../model/config.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { MODEL_FLAG, openModelFile } from "../default-model.ts";

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

/** `1536` → `1.5 KiB`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
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

/** The `inspect` command. */
const SPEC = {
  name: "inspect",
  summary: "Shows what a GGUF model holds, from its header (no tensor data is read).",
  flags: {
    model: MODEL_FLAG,
    json: { type: "boolean", description: "print one JSON object instead of text" },
  },
} as const;

export const inspectCommand: CliCommand = defineCommand(
  SPEC,
  "show a GGUF model's architecture, size, quant mix and tokenizer",
  async (f) => {
    const file = await openModelFile(f.model);
    try {
      const summary = summarizeModel(file);
      console.log(f.json ? JSON.stringify(summary, null, 2) : formatText(summary));
    } finally {
      await file.close();
    }
    return 0;
  },
);
