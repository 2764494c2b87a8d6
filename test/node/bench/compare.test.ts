/**
 * Smoke test of the benchmark harness end to end: `bench/compare.ts --quick` on the CPU
 * backend builds two tiny synthetic models, runs our `bench --json` and llama.cpp's
 * bench/llamacpp-bench.mjs on each, and writes the JSON and the SVG chart.
 * Needs `deno` on PATH (or DENO=path), as the CLI does.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const exec = promisify(execFile);

/** The result file's shape, as far as this test reads it. */
interface CompareResult {
  readonly json_path: string;
  readonly svg_path: string;
  readonly settings: { readonly prompt_tokens: number; readonly gen_tokens: number };
  readonly rows: readonly {
    readonly spec: string;
    readonly skipped?: string;
    readonly ours: Record<string, unknown> | null;
    readonly ours_error?: string;
    readonly llamacpp: Record<string, unknown> | null;
    readonly llamacpp_error?: string;
    readonly ratio: { readonly prefill: number; readonly decode: number } | null;
  }[];
}

function expectPositive(side: Record<string, unknown> | null, field: string, where: string): void {
  const value = side?.[field];
  expect(typeof value, `${where} ${field}`).toBe("number");
  expect(value as number, `${where} ${field}`).toBeGreaterThan(0);
  expect(Number.isFinite(value), `${where} ${field}`).toBe(true);
}

describe("bench/compare.ts --quick", () => {
  let dir = "";
  let result: CompareResult;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bench-compare-"));
    // One llama.cpp thread: on a 2-core machine shared with other work, spinning ggml threads
    // can slow a tiny model 100-fold, which would only make this test slow, not wrong.
    const { stdout } = await exec(
      process.env.DENO ?? "deno",
      ["run", "-A", "bench/compare.ts", "--quick", "--backend", "cpu", "--threads", "1", "--json",
        "--models", "tiny:Q8_0,tiny:Q4_K_M:qwen2", "--out-dir", join(dir, "results"), "--cache-dir", join(dir, "models")],
      { cwd: ROOT, timeout: 110_000, maxBuffer: 16 * 2 ** 20 },
    );
    result = JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as CompareResult;
  }, 120_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("measures both engines on every quick model with positive figures", () => {
    expect(result.rows.map((r) => r.spec)).toEqual(["tiny:Q8_0", "tiny:Q4_K_M:qwen2"]);
    for (const row of result.rows) {
      expect(row.skipped, row.spec).toBeUndefined();
      expect(row.ours_error, row.spec).toBeUndefined();
      expect(row.llamacpp_error, row.spec).toBeUndefined();
      for (const field of ["prefill_tok_s", "decode_tok_s", "ttft_ms", "load_ms"]) {
        expectPositive(row.ours, field, `${row.spec} ours`);
        expectPositive(row.llamacpp, field, `${row.spec} llama.cpp`);
      }
      expect(row.ours?.peak_gpu_bytes, `${row.spec} ours peak_gpu_bytes`).toBeGreaterThanOrEqual(0);
      // Both sides ran the same lengths: llama.cpp gets the prompt length ours used.
      expect(row.llamacpp?.prompt_tokens).toBe(row.ours?.prompt_tokens);
      expect(row.llamacpp?.gen_tokens).toBe(result.settings.gen_tokens);
      expect(row.ratio?.decode).toBeCloseTo((row.ours?.decode_tok_s as number) / (row.llamacpp?.decode_tok_s as number), 9);
      expect(row.ratio?.prefill).toBeGreaterThan(0);
    }
  });

  it("writes the JSON it printed and an SVG chart with a bar per engine and model", async () => {
    const saved = JSON.parse(await readFile(result.json_path, "utf8")) as CompareResult;
    expect(saved.rows).toEqual(result.rows);
    const svg = await readFile(result.svg_path, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    // 2 panels × 2 models × 2 engines bars, each with its hover title.
    expect(svg.match(/<rect [^>]*><title>/g)?.length).toBe(8);
  });
});
