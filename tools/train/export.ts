/**
 * Writes the embedded default model, models/tiny-fortunes-{f32,f16,q8_0,q4_k_m}.gguf, from
 * what tools/train/train.py exported: a manifest (config + tensor list, GGUF names, `ne`
 * shapes) and one raw little-endian f32 file, plus the tokenizer from tools/train/bpe.py.
 *
 * Run: deno run -A tools/train/export.ts [--data .cache/train] [--out models]
 *
 * Everything goes through the project's own GGUF writer and quantizer, so shipping these
 * files also exercises them; llama.cpp loading them (test/node/embedded) checks both.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { InvalidArgumentError } from "../../src/errors.ts";
import { GGMLType } from "../../src/gguf/ggml-type.ts";
import { quantize } from "../../src/gguf/quant/index.ts";
import { fileTypeOfMix, type QuantMix, tensorTypeForMix } from "../../src/gguf/quant-mix.ts";
import { type MetaEntry, meta, type TensorSpec, writeGGUFFile } from "../../src/gguf/writer.ts";

/** Model shape as train.py's CONFIG writes it. */
export interface TrainedConfig {
  readonly vocab_size: number;
  readonly n_embd: number;
  readonly n_layer: number;
  readonly n_head: number;
  readonly n_head_kv: number;
  readonly n_ff: number;
  readonly context_length: number;
  readonly rms_eps: number;
  readonly rope_base: number;
}

/** One tensor of the raw export: `count` f32 values at byte `offset` of the weights file. */
export interface ManifestTensor {
  readonly name: string;
  readonly ne: readonly number[];
  readonly offset: number;
  readonly count: number;
}

/** train.py's export/manifest.json. */
export interface Manifest {
  readonly config: TrainedConfig;
  readonly tensors: readonly ManifestTensor[];
  readonly weights: string;
}

/** bpe.py's tokenizer.json, the parts GGUF needs. */
export interface TrainedTokenizer {
  readonly tokens: readonly string[];
  readonly token_type: readonly number[];
  readonly merges: readonly string[];
  readonly specials: Readonly<Record<string, number>>;
}

/** The variants we ship, with their file suffixes. */
export const SHIPPED_MIXES: readonly (readonly [QuantMix, string])[] = [
  ["F32", "f32"],
  ["F16", "f16"],
  ["Q8_0", "q8_0"],
  ["Q4_K_M", "q4_k_m"],
];

/**
 * Chat template: one `<|role|>\n…<|endoftext|>` turn per message, then `<|assistant|>\n`
 * for the reply. BOS stays out: llama.cpp adds it (`add_bos_token`), and a template that
 * also emitted it would double it. Only the three roles the tokenizer has are accepted.
 */
export const CHAT_TEMPLATE =
  "{%- for message in messages -%}" +
  "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}" +
  "{{- raise_exception('unknown role: ' + message['role']) -}}" +
  "{%- endif -%}" +
  "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|endoftext|>' -}}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}";

function parseArgs(argv: readonly string[]): { data: string; out: string } {
  const opts = { data: ".cache/train", out: "models" };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    const value = argv[i + 1];
    if ((key !== "--data" && key !== "--out") || value === undefined) {
      throw new InvalidArgumentError("argv", `expected --data DIR / --out DIR, got ${String(key)}`);
    }
    opts[key === "--data" ? "data" : "out"] = value;
  }
  return opts;
}

async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, "utf8")) as unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null;
}

/** Checks the fields we use, so a stale or truncated export fails with a named field. */
function asManifest(v: unknown, path: string): Manifest {
  if (!isRecord(v) || !isRecord(v.config) || !Array.isArray(v.tensors) || typeof v.weights !== "string") {
    throw new InvalidArgumentError(path, "is not a train.py manifest (config, tensors, weights)");
  }
  for (const t of v.tensors as unknown[]) {
    if (!isRecord(t) || typeof t.name !== "string" || !Array.isArray(t.ne) || typeof t.offset !== "number") {
      throw new InvalidArgumentError(path, `tensor entry ${JSON.stringify(t)} lacks name/ne/offset`);
    }
  }
  return v as unknown as Manifest;
}

function asTokenizer(v: unknown, path: string): TrainedTokenizer {
  if (!isRecord(v) || !Array.isArray(v.tokens) || !Array.isArray(v.token_type) || !Array.isArray(v.merges) || !isRecord(v.specials)) {
    throw new InvalidArgumentError(path, "is not a bpe.py tokenizer (tokens, token_type, merges, specials)");
  }
  return v as unknown as TrainedTokenizer;
}

function specialId(tok: TrainedTokenizer, name: string): number {
  const id = tok.specials[name];
  if (id === undefined) throw new InvalidArgumentError("tokenizer.specials", `has no ${name}`);
  return id;
}

/** GGUF metadata of one variant. */
export function modelMetadata(c: TrainedConfig, tok: TrainedTokenizer, mix: QuantMix): [string, MetaEntry][] {
  if (tok.tokens.length !== c.vocab_size) {
    throw new InvalidArgumentError("tokenizer.tokens", `${tok.tokens.length} tokens, config says ${c.vocab_size}`);
  }
  const eos = specialId(tok, "<|endoftext|>");
  const entries: [string, MetaEntry][] = [
    ["general.architecture", meta.str("llama")],
    ["general.name", meta.str("tiny-fortunes")],
    ["general.description", meta.str("A 2.5M-parameter llama trained on Debian's fortune cookies; the runtime's embedded default model.")],
    ["general.license", meta.str("MIT")],
    ["general.file_type", meta.u32(fileTypeOfMix(mix))],
    ["llama.vocab_size", meta.u32(c.vocab_size)],
    ["llama.context_length", meta.u32(c.context_length)],
    ["llama.embedding_length", meta.u32(c.n_embd)],
    ["llama.block_count", meta.u32(c.n_layer)],
    ["llama.feed_forward_length", meta.u32(c.n_ff)],
    ["llama.attention.head_count", meta.u32(c.n_head)],
    ["llama.attention.head_count_kv", meta.u32(c.n_head_kv)],
    ["llama.attention.layer_norm_rms_epsilon", meta.f32(c.rms_eps)],
    ["llama.rope.dimension_count", meta.u32(c.n_embd / c.n_head)],
    ["llama.rope.freq_base", meta.f32(c.rope_base)],
    ["tokenizer.ggml.model", meta.str("gpt2")],
    ["tokenizer.ggml.pre", meta.str("gpt-2")],
    ["tokenizer.ggml.tokens", meta.strs(tok.tokens)],
    ["tokenizer.ggml.token_type", meta.i32s(tok.token_type)],
    ["tokenizer.ggml.merges", meta.strs(tok.merges)],
    ["tokenizer.ggml.bos_token_id", meta.u32(specialId(tok, "<|bos|>"))],
    ["tokenizer.ggml.eos_token_id", meta.u32(eos)],
    ["tokenizer.ggml.eot_token_id", meta.u32(eos)],
    ["tokenizer.ggml.add_bos_token", meta.bool(true)],
    ["tokenizer.ggml.add_eos_token", meta.bool(false)],
    ["tokenizer.chat_template", meta.str(CHAT_TEMPLATE)],
  ];
  if (mix !== "F32" && mix !== "F16") entries.push(["general.quantization_version", meta.u32(2)]);
  return entries;
}

/** The f32 values of one manifest tensor, copied out of the weights file. */
function tensorValues(weights: Uint8Array, t: ManifestTensor): Float32Array {
  const n = t.ne.reduce((a, b) => a * b, 1);
  if (n !== t.count || t.offset + 4 * n > weights.byteLength) {
    throw new InvalidArgumentError(`tensor "${t.name}"`, `ne [${t.ne.join(", ")}] at ${t.offset} does not fit the ${weights.byteLength}-byte weights`);
  }
  // slice() copies to a fresh, aligned buffer; the file is little-endian like every target.
  return new Float32Array(weights.slice(t.offset, t.offset + 4 * n).buffer);
}

/** Tensor specs of one variant, each converted with the type llama-quantize would pick. */
export function tensorSpecs(m: Manifest, weights: Uint8Array, mix: QuantMix): TensorSpec[] {
  return m.tensors.map((t) => {
    const type = tensorTypeForMix(mix, t.name, t.ne, m.config.n_layer, { tiedEmbeddings: true });
    const values = tensorValues(weights, t);
    const data = type === GGMLType.F32 ? new Uint8Array(values.buffer) : quantize(type, values, { tensor: t.name });
    return { name: t.name, type, shape: t.ne, data };
  });
}

async function main(): Promise<void> {
  const { data, out } = parseArgs(process.argv.slice(2));
  const manifestPath = join(data, "export", "manifest.json");
  const manifest = asManifest(await readJson(manifestPath), manifestPath);
  const tokPath = join(data, "tokenizer.json");
  const tok = asTokenizer(await readJson(tokPath), tokPath);
  const weights = new Uint8Array(await readFile(join(data, "export", manifest.weights)));
  for (const [mix, suffix] of SHIPPED_MIXES) {
    const path = join(out, `tiny-fortunes-${suffix}.gguf`);
    await writeGGUFFile(path, { metadata: modelMetadata(manifest.config, tok, mix), tensors: tensorSpecs(manifest, weights, mix) });
    console.log(`wrote ${path}`);
  }
}

if (import.meta.main) await main();
