/**
 * Our runtime against llama.cpp, in one run, on the same GGUF files (not a test).
 *
 *   npm run bench:compare                     # = deno run -A bench/compare.ts
 *   deno run -A bench/compare.ts --quick --backend cpu          # tiny models, a minute or two
 *   deno run -A bench/compare.ts --models qwen2.5-0.5b:Q8_0 --prompt-tokens 256 --gen-tokens 128
 *   deno run -A bench/compare.ts --llamacpp-gpu vulkan          # on a machine with a GPU build
 *
 * For each model: ours through `deno run -A src/cli/main.ts bench --json` (the engine as users
 * get it) and llama.cpp through `node bench/llamacpp-bench.mjs` (node-llama-cpp's prebuilt
 * binaries), each in its own process so neither warms the other's caches or threads, with the
 * same prompt and generation lengths and repetitions. Ours runs first; llama.cpp then gets
 * the prompt length ours actually used (ours clamps it to the context).
 *
 * Models (`--models`, repeat or comma-separate):
 *   embedded                 models/tiny-fortunes-q8_0.gguf (skipped with a note when absent)
 *   PRESET:QUANT[:ARCH]      a synthetic file from `make-model`, built once into .cache/bench/
 *                            (e.g. llama-3.2-1b:Q4_K_M, qwen2.5-0.5b:Q8_0, tiny:Q8_0:qwen2)
 *   path/to/file.gguf        any GGUF file
 *
 * Writes results/compare-<time>.json (settings, machine, every figure with its spread) and
 * results/compare-<time>.svg (prefill and decode tokens/s, ours beside llama.cpp). A side that
 * fails (say `--backend webgpu` where no adapter exists) leaves its cells empty with the
 * error under the table; the other side still runs.
 *
 * On a GPU machine where node-llama-cpp's Vulkan build is unpacked elsewhere (see
 * ../shared/tools/llamacpp-vulkan/): `NODE_LLAMA_CPP=/tmp/llv/node_modules/node-llama-cpp/dist/index.js
 * deno run -A bench/compare.ts --llamacpp-gpu vulkan --node /tmp/node`.
 */
import { existsSync } from "node:fs";
import { mkdir, rename, stat, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "../src/cli/args.ts";
import { formatValue, groupedBarChart } from "./chart.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const EMBEDDED = join(ROOT, "models", "tiny-fortunes-q8_0.gguf");
const DEFAULT_MODELS = ["embedded", "qwen2.5-0.5b:Q4_K_M", "qwen2.5-0.5b:Q8_0", "llama-3.2-1b:Q4_K_M", "llama-3.2-1b:Q8_0"];
const QUICK_MODELS = ["embedded", "tiny:Q8_0", "tiny:Q4_K_M:qwen2"];

const parsed = parseArgs(Deno.args, {
  name: "compare",
  summary: "Runs our bench and llama.cpp on the same GGUF files; prints a table, writes JSON and an SVG chart.",
  flags: {
    models: { type: "strings", placeholder: "spec", description: `embedded | PRESET:QUANT[:ARCH] | FILE.gguf (default: ${DEFAULT_MODELS.join(", ")})` },
    promptTokens: { type: "number", integer: true, min: 1, placeholder: "n", description: "prompt length (default 128; quick 16)" },
    genTokens: { type: "number", integer: true, min: 2, placeholder: "n", description: "tokens generated per run (default 64; quick 8)" },
    repetitions: { type: "number", integer: true, min: 1, placeholder: "n", description: "measured runs per side, after a warm-up (default 3; quick 2)" },
    backend: { type: "string", default: "webgpu", placeholder: "webgpu|cpu", description: "our backend" },
    skipLlamacpp: { type: "boolean", description: "run ours only" },
    llamacppGpu: { type: "string", default: "cpu", placeholder: "cpu|vulkan|cuda", description: "llama.cpp build to run" },
    threads: { type: "number", integer: true, min: 1, placeholder: "n", description: "llama.cpp CPU threads (default: the machine's cores)" },
    node: { type: "string", default: "node", placeholder: "path", description: "Node executable for llama.cpp" },
    quick: { type: "boolean", description: `tiny models (${QUICK_MODELS.join(", ")}) and short runs, for smoke tests` },
    outDir: { type: "string", default: "results", placeholder: "dir", description: "where the JSON and SVG go (relative to the project root)" },
    cacheDir: { type: "string", default: ".cache/bench", placeholder: "dir", description: "where synthetic models are built and kept (relative to the project root)" },
    timeoutS: { type: "number", min: 1, default: 3600, placeholder: "s", description: "limit for each process (build, ours, llama.cpp)" },
    json: { type: "boolean", description: "print the result JSON instead of the table" },
  },
});
if (parsed.help) {
  console.log(parsed.text);
  Deno.exit(0);
}
const f = parsed.flags;
if (f.backend !== "webgpu" && f.backend !== "cpu") {
  console.error(`--backend must be webgpu or cpu, got ${f.backend}`);
  Deno.exit(2);
}
const settings = {
  prompt_tokens: f.promptTokens ?? (f.quick ? 16 : 128),
  gen_tokens: f.genTokens ?? (f.quick ? 8 : 64),
  repetitions: f.repetitions ?? (f.quick ? 2 : 3),
  backend: f.backend,
  llamacpp_gpu: f.skipLlamacpp ? null : f.llamacppGpu,
  llamacpp_threads: f.threads ?? navigator.hardwareConcurrency,
  quick: f.quick,
};
const specs = (f.models.length > 0 ? f.models : f.quick ? QUICK_MODELS : DEFAULT_MODELS)
  .flatMap((m) => m.split(","))
  .map((m) => m.trim())
  .filter(Boolean);

/** Progress goes to stderr so that `--json` leaves stdout to the result. */
function note(line: string): void {
  console.error(line);
}

/** A model to measure: where its file is, and how to build it when it is synthetic. */
interface ModelSpec {
  readonly spec: string;
  readonly label: string;
  readonly quant: string;
  readonly file: string;
  readonly build?: { readonly preset: string; readonly quant: string; readonly arch?: string };
}

function resolveSpec(spec: string): ModelSpec {
  if (spec === "embedded") return { spec, label: "tiny-fortunes (embedded)", quant: "Q8_0", file: EMBEDDED };
  if (spec.endsWith(".gguf") || spec.includes("/")) {
    const file = resolve(spec);
    const quant = /(F16|F32|BF16|Q\d_K(?:_[SML])?|Q\d_\d|IQ\w+)/i.exec(file.split("/").pop() ?? "")?.[1]?.toUpperCase() ?? "?";
    return { spec, label: file.split("/").pop() ?? file, quant, file };
  }
  const [preset, quant, arch] = spec.split(":");
  if (!preset || !quant) throw new Error(`model "${spec}": expected embedded, PRESET:QUANT[:ARCH] or a .gguf path`);
  const name = `${preset}${arch ? `-${arch}` : ""}-${quant}.gguf`;
  return {
    spec,
    label: `${preset}${arch ? ` (${arch})` : ""}`,
    quant,
    file: resolve(ROOT, f.cacheDir, name),
    build: { preset, quant, arch },
  };
}

/** Runs a process to completion; stdout and stderr as text. */
async function run(cmd: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(cmd, {
      args: [...args],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(f.timeoutS * 1000),
    }).output();
  } catch (error) {
    // Not found, or killed at --timeout-s: a failed cell, not a failed comparison.
    return { code: -1, stdout: "", stderr: `${cmd}: ${error instanceof Error ? error.message : String(error)}` };
  }
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** The last line of `stdout` that parses as a JSON object. */
function lastJson(stdout: string): Record<string, unknown> | null {
  for (const line of stdout.trim().split("\n").reverse()) {
    if (!line.startsWith("{")) continue;
    try {
      const value: unknown = JSON.parse(line);
      if (value && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
    } catch {
      // not the result line
    }
  }
  return null;
}

/** The last meaningful stderr lines, for an error cell (the XDG_RUNTIME_DIR warnings of lavapipe are noise). */
function errorTail(stderr: string, stdout: string): string {
  const lines = (stderr + "\n" + stdout).split("\n").map((l) => l.trim()).filter((l) => l && !l.includes("XDG_RUNTIME_DIR"));
  return lines.slice(-3).join(" | ").slice(0, 500) || "no output";
}

/** Builds a synthetic model once (written under a temporary name, so a killed build leaves no half file). */
async function ensureModel(m: ModelSpec): Promise<void> {
  if (existsSync(m.file) || !m.build) return;
  await mkdir(dirname(m.file), { recursive: true });
  const partial = `${m.file}.partial`;
  const args = ["run", "-A", "src/cli/main.ts", "make-model", "--preset", m.build.preset, "--quant", m.build.quant, "--out", partial];
  if (m.build.arch) args.push("--arch", m.build.arch);
  note(`building ${relative(ROOT, m.file)} (make-model ${args.slice(4).join(" ")})`);
  const start = performance.now();
  const r = await run(Deno.execPath(), args);
  if (r.code !== 0) throw new Error(`make-model failed: ${errorTail(r.stderr, r.stdout)}`);
  await rename(partial, m.file);
  note(`  built in ${((performance.now() - start) / 1000).toFixed(0)} s`);
}

/** The figures compared (the medians), as both sides print them. */
const FIELDS = ["prefill_tok_s", "decode_tok_s", "ttft_ms", "load_ms"] as const;

/** One side's result: its JSON, or why there is none. */
type Side = { readonly ok: true; readonly result: Record<string, unknown> } | { readonly ok: false; readonly error: string };

function checkResult(result: Record<string, unknown> | null, what: string, r: { stderr: string; stdout: string; code: number }): Side {
  if (r.code !== 0 || !result) return { ok: false, error: `${what} exited ${r.code}: ${errorTail(r.stderr, r.stdout)}` };
  for (const field of FIELDS) {
    if (typeof result[field] !== "number") return { ok: false, error: `${what} printed no number ${field}` };
  }
  return { ok: true, result };
}

async function runOurs(m: ModelSpec, promptTokens: number): Promise<Side> {
  // A context just large enough: the presets' own (up to 131072) would size a huge KV cache.
  const context = Math.ceil((promptTokens + settings.gen_tokens + 16) / 256) * 256;
  const args = [
    "run", "-A", "src/cli/main.ts", "bench", "--json",
    "--model", m.file,
    "--backend", settings.backend,
    "--context", String(context),
    "--prompt-tokens", String(promptTokens),
    "--gen-tokens", String(settings.gen_tokens),
    "--repetitions", String(settings.repetitions),
  ];
  const r = await run(Deno.execPath(), args);
  return checkResult(lastJson(r.stdout), "ours", r);
}

async function runLlamaCpp(m: ModelSpec, promptTokens: number): Promise<Side> {
  const args = [
    join(ROOT, "bench", "llamacpp-bench.mjs"),
    "--model", m.file,
    "--prompt-tokens", String(promptTokens),
    "--gen-tokens", String(settings.gen_tokens),
    "--repetitions", String(settings.repetitions),
    "--gpu", f.llamacppGpu,
    "--threads", String(settings.llamacpp_threads),
  ];
  const r = await run(f.node, args);
  return checkResult(lastJson(r.stdout), "llama.cpp", r);
}

/** One model's row of the comparison. */
interface Row {
  readonly model: string;
  readonly spec: string;
  readonly quant: string;
  readonly file: string;
  readonly file_bytes: number | null;
  readonly skipped?: string;
  readonly ours: Record<string, unknown> | null;
  readonly ours_error?: string;
  readonly llamacpp: Record<string, unknown> | null;
  readonly llamacpp_error?: string;
  /** ours ÷ llama.cpp (higher is better for ours). */
  readonly ratio: { readonly prefill: number; readonly decode: number } | null;
}

function num(result: Record<string, unknown> | null, field: string): number | null {
  const v = result?.[field];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

async function measure(m: ModelSpec): Promise<Row> {
  const base = { model: m.label, spec: m.spec, quant: m.quant, file: relative(ROOT, m.file) };
  try {
    await ensureModel(m);
  } catch (error) {
    return { ...base, file_bytes: null, skipped: String(error instanceof Error ? error.message : error), ours: null, llamacpp: null, ratio: null };
  }
  if (!existsSync(m.file)) {
    return { ...base, file_bytes: null, skipped: `${base.file} does not exist`, ours: null, llamacpp: null, ratio: null };
  }
  const fileBytes = (await stat(m.file)).size;
  note(`${m.label} ${m.quant}: ours (${settings.backend})…`);
  const ours = await runOurs(m, settings.prompt_tokens);
  const promptTokens = ours.ok ? (num(ours.result, "prompt_tokens") ?? settings.prompt_tokens) : settings.prompt_tokens;
  let llama: Side | null = null;
  if (!f.skipLlamacpp) {
    note(`${m.label} ${m.quant}: llama.cpp (${f.llamacppGpu})…`);
    llama = await runLlamaCpp(m, promptTokens);
  }
  const o = ours.ok ? ours.result : null;
  const l = llama?.ok ? llama.result : null;
  const ratio = (field: string) => {
    const a = num(o, field);
    const b = num(l, field);
    return a !== null && b !== null && b > 0 ? a / b : NaN;
  };
  return {
    ...base,
    file_bytes: fileBytes,
    ours: o,
    ...(ours.ok ? {} : { ours_error: ours.error }),
    llamacpp: l,
    ...(llama && !llama.ok ? { llamacpp_error: llama.error } : {}),
    ratio: o && l ? { prefill: ratio("prefill_tok_s"), decode: ratio("decode_tok_s") } : null,
  };
}

function cell(v: number | null, width: number): string {
  return (v === null ? "—" : formatValue(v)).padStart(width);
}

function table(rows: readonly Row[]): string {
  const head = ["model".padEnd(28), "quant".padEnd(7), "ours pp".padStart(9), "ours tg".padStart(9), "llama pp".padStart(9), "llama tg".padStart(9), "pp ×".padStart(6), "tg ×".padStart(6)];
  const lines = [head.join(" ")];
  for (const r of rows) {
    lines.push([
      r.model.padEnd(28).slice(0, 28),
      r.quant.padEnd(7),
      cell(num(r.ours, "prefill_tok_s"), 9),
      cell(num(r.ours, "decode_tok_s"), 9),
      cell(num(r.llamacpp, "prefill_tok_s"), 9),
      cell(num(r.llamacpp, "decode_tok_s"), 9),
      (r.ratio ? r.ratio.prefill.toFixed(2) : "—").padStart(6),
      (r.ratio ? r.ratio.decode.toFixed(2) : "—").padStart(6),
    ].join(" "));
  }
  lines.push("pp = prefill tok/s, tg = decode tok/s (medians); × = ours ÷ llama.cpp");
  for (const r of rows) {
    if (r.skipped) lines.push(`  ${r.model} ${r.quant}: skipped (${r.skipped})`);
    if (r.ours_error) lines.push(`  ${r.model} ${r.quant}: ${r.ours_error}`);
    if (r.llamacpp_error) lines.push(`  ${r.model} ${r.quant}: ${r.llamacpp_error}`);
  }
  return lines.join("\n");
}

function chart(rows: readonly Row[], subtitle: string): string {
  const measured = rows.filter((r) => r.ours || r.llamacpp);
  const panel = (title: string, field: string) => ({
    title,
    groups: measured.map((r) => ({ label: `${r.model} ${r.quant}`, values: [num(r.ours, field), num(r.llamacpp, field)] })),
  });
  return groupedBarChart({
    title: "webgpu-llm vs llama.cpp (tokens/s, log scale)",
    subtitle,
    series: [`ours (${settings.backend})`, `llama.cpp (${settings.llamacpp_gpu ?? "skipped"})`],
    panels: [panel("prefill tok/s", "prefill_tok_s"), panel("decode tok/s", "decode_tok_s")],
  });
}

const created = new Date();
const loadStart = Deno.loadavg();
const rows: Row[] = [];
for (const spec of specs) rows.push(await measure(resolveSpec(spec)));
const ours = rows.find((r) => r.ours)?.ours;
const llama = rows.find((r) => r.llamacpp)?.llamacpp;
const notes: string[] = [];
if (!f.skipLlamacpp && f.llamacppGpu === "cpu" && loadStart[0] > navigator.hardwareConcurrency && settings.llamacpp_threads > 1) {
  // Seen here: at load 11 on 2 cores, 2 threads decoded a 0.5B model 10-15× slower than 1 thread.
  notes.push(`load average ${loadStart[0].toFixed(1)} exceeds the ${navigator.hardwareConcurrency} cores: llama.cpp's ${settings.llamacpp_threads} spinning threads ` +
    "are then much slower than they would be alone; compare with --threads 1 too");
}
const result = {
  created: created.toISOString(),
  settings,
  notes,
  host: {
    os: `${Deno.build.os} ${Deno.build.arch}`,
    cpus: navigator.hardwareConcurrency,
    loadavg_start: loadStart,
    loadavg_end: Deno.loadavg(),
    deno: Deno.version.deno,
    ours_adapter: ours?.adapter ?? null,
    llamacpp_adapter: llama?.adapter ?? null,
  },
  rows,
};
const stamp = created.toISOString().replace(/[:.]/g, "-");
const outDir = resolve(ROOT, f.outDir);
await mkdir(outDir, { recursive: true });
const jsonPath = join(outDir, `compare-${stamp}.json`);
const svgPath = join(outDir, `compare-${stamp}.svg`);
const subtitle = `${settings.prompt_tokens} prompt + ${settings.gen_tokens} generated tokens, median of ${settings.repetitions}; ` +
  `ours on ${String(ours?.adapter ?? settings.backend)}, llama.cpp on ${String(llama?.adapter ?? settings.llamacpp_gpu ?? "—")}; ${created.toISOString()}`;
await writeFile(jsonPath, JSON.stringify(result, null, 2) + "\n");
await writeFile(svgPath, chart(rows, subtitle));
if (f.json) console.log(JSON.stringify({ ...result, json_path: jsonPath, svg_path: svgPath }));
else {
  console.log(subtitle);
  console.log(table(rows));
  for (const line of notes) console.log(`note: ${line}`);
  console.log(`wrote ${relative(ROOT, jsonPath)} and ${relative(ROOT, svgPath)}`);
}
