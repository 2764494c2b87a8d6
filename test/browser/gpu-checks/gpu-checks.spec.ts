/**
 * The WebGPU kernels and the whole model in Chromium (WebGPU on SwiftShader, which has
 * subgroups but no shader-f16: the subgroup reductions that Deno's lavapipe cannot run are
 * checked here), against the CPU. The same checks as the Deno GPU suites
 * (test/deno/gpu-matmul.test.ts, gpu-ops.test.ts, gpu-model.test.ts), on fewer variants.
 *
 * The page (index.html → page.ts, bundled by Vite in beforeAll) imports the project's src
 * modules directly and offers `window.gpuChecks` (api.ts); each test runs one check and
 * asserts on the figures it answers, which are also printed and kept as annotations in the
 * JSON report. Models are served over HTTP with range requests (support/server.ts); the
 * CPU reference runs here in Node on the same files.
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, expect, type Page, test } from "@playwright/test";
import { build } from "vite";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { ReferenceModel } from "../../../src/model/reference.ts";
import { tokenizerFromMetadata } from "../../../src/tokenizer/index.ts";
import { startServer, type TestServer } from "../support/server.ts";
import type { AdapterReport, KernelReport, MatrixTypeName } from "./api.ts";
import { compareLogits } from "./measures.ts";
import { GPU_CHECKS_SITE } from "./vite.config.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const MODELS = resolve(HERE, "..", "..", "..", "models");

/** One type per quant family: float, legacy (two), K-quants (two). */
const MATRIX_TYPES: readonly MatrixTypeName[] = ["F16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"];

/** The embedded model and its variants: one per family of the weights' types. */
const MODEL_FILES = [
  { file: "tiny-fortunes-q8_0.gguf", family: "legacy (Q8_0, the embedded model)", exact: false },
  { file: "tiny-fortunes-f16.gguf", family: "float (F16)", exact: true },
  { file: "tiny-fortunes-q4_k_m.gguf", family: "K-quants (Q4_K_M: Q4_K and Q6_K)", exact: false },
] as const;

/** Prompt positions: SwiftShader pays for each, so few. */
const POSITIONS = 16;
const PROMPT = "A fortune cookie says: you will be hungry again in one hour, and then you will laugh.";

// Not serial: one failed check must not hide the others. The tests still run in order in
// one worker, sharing the page; after a failure Playwright starts a new worker, and
// beforeAll builds and opens the page again.
let server: TestServer;
let context: BrowserContext;
let page: Page;
let adapter: AdapterReport;
const pageErrors: string[] = [];

test.beforeAll(async ({ browser }) => {
  await build({ configFile: join(HERE, "vite.config.ts") });
  const files = Object.fromEntries(MODEL_FILES.map((m) => [`/models/${m.file}`, join(MODELS, m.file)]));
  server = await startServer({ root: GPU_CHECKS_SITE, files });
  context = await browser.newContext();
  page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(m.text());
  });
  await page.goto(`${server.origin}/`);
  await expect(page.locator("body")).toHaveAttribute("data-ready", "true");
  adapter = await page.evaluate(() => window.gpuChecks!.adapter());
});

test.afterAll(async () => {
  await context?.close();
  await server?.close();
});

test.afterEach(() => {
  expect(pageErrors, "errors on the page").toEqual([]);
});

/** Prints a line to the test output and keeps it in the JSON report. */
function report(line: string): void {
  console.log(`  ${line}`);
  test.info().annotations.push({ type: "figures", description: line });
}

function assertKernelReport(r: KernelReport): void {
  for (const c of r.comparisons) {
    report(`${c.name}: worst error ${c.worst.toExponential(2)} (tolerance ${c.tolerance.toExponential(0)})`);
  }
  report(`${r.variants.length} pipelines, ${(r.ms / 1000).toFixed(1)} s`);
  for (const c of r.comparisons) {
    expect(c.failure, c.name).toBeUndefined();
    expect(c.worst, c.name).toBeLessThanOrEqual(c.tolerance);
  }
}

test("the adapter is SwiftShader, with subgroups and without shader-f16", async () => {
  report(`adapter: ${JSON.stringify(adapter)}`);
  expect(`${adapter.description} ${adapter.vendor} ${adapter.architecture}`).toMatch(/swiftshader/i);
  expect(adapter.subgroups).toBe(true);
  expect(adapter.f16).toBe(false);
});

for (const type of MATRIX_TYPES) {
  test(`matrix kernels ${type}: matvec, small-batch n = 3, 9 and tiled n = 33 against the CPU dequantize`, async () => {
    const r = await page.evaluate((t) => window.gpuChecks!.matrix(t), type);
    assertKernelReport(r);
    // The matvec and small-batch variants reduce with subgroup operations where offered.
    const matvecs = r.variants.filter((v) => v.startsWith("matvec_"));
    expect(matvecs).toHaveLength(3);
    for (const v of matvecs) expect(v.endsWith("_sg"), v).toBe(adapter.subgroups);
  });
}

test("rmsnorm, rope with the KV append, and attention against f64 formulas", async () => {
  assertKernelReport(await page.evaluate(() => window.gpuChecks!.ops()));
});

/** The prompt's first POSITIONS token ids (BOS first), from the models' shared tokenizer. */
async function promptTokens(): Promise<number[]> {
  const file = await openGGUF(join(MODELS, MODEL_FILES[0].file));
  try {
    const ids = tokenizerFromMetadata(file.metadata).encode(PROMPT).slice(0, POSITIONS);
    expect(ids).toHaveLength(POSITIONS);
    return ids;
  } finally {
    await file.close();
  }
}

for (const m of MODEL_FILES) {
  const bound = m.exact ? "max |diff| ≤ 1e-3" : "mean KL ≤ 5e-3, top-1 ≥ 98%";
  test(`whole model, ${m.family}: GpuRunner logits over ${POSITIONS} positions vs the CPU reference (${bound})`, async () => {
    const tokens = await promptTokens();
    const run = page.evaluate(([url, ids]) => window.gpuChecks!.model(url, ids), [`/models/${m.file}`, tokens] as const);
    // The reference dequantizes the same file, so only f32 rounding separates the two.
    const file = await openGGUF(join(MODELS, m.file));
    let want: Float32Array[];
    try {
      const ref = await ReferenceModel.load(file);
      want = ref.forward(tokens, ref.createCache(POSITIONS), { allLogits: true });
    } finally {
      await file.close();
    }
    const got = await run;
    const a = compareLogits(got.logits, want);
    report(
      `${m.file}: max |diff| ${a.maxDiff.toExponential(2)}, mean KL ${a.meanKl.toExponential(2)} nats, top-1 ${(100 * a.top1).toFixed(1)}% ` +
        `(${got.description}; load ${(got.loadMs / 1000).toFixed(1)} s, ${POSITIONS} positions ${(got.runMs / 1000).toFixed(2)} s)`,
    );
    expect(got.logits).toHaveLength(POSITIONS);
    // Read in parts over HTTP: every request for the file asked for a range and got one.
    const requests = server.log.filter((e) => e.path === `/models/${m.file}` && e.method === "GET");
    expect(requests.length).toBeGreaterThan(0);
    for (const r of requests) expect([r.range !== undefined, r.status]).toEqual([true, 206]);
    expect(got.liveBuffersAfterDispose, "buffers left after dispose").toBe(0);
    // The project's bounds (gpu-model.test.ts); the quantized files also get the float
    // bound there, as the same bits are read on both sides.
    if (!m.exact) {
      expect(a.meanKl, "mean KL").toBeLessThanOrEqual(5e-3);
      expect(a.top1, "top-1 agreement").toBeGreaterThanOrEqual(0.98);
    }
    expect(a.maxDiff, "max |diff|").toBeLessThanOrEqual(1e-3);
  });
}
