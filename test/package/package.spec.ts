/**
 * The npm package as a user gets it: `npm pack` (which builds, in prepack), the tarball installed
 * into an empty project in a temporary folder, then used from there by TypeScript, by a
 * Vite page in Chromium (engine in the page on WebGPU, and in the package's worker), by
 * Deno (WebGPU on Mesa's lavapipe, and the CPU backend) and by Node (CPU backend).
 * Every generation must equal the CPU reference of this repository's source on the same
 * model, computed here in the test process.
 */
import { execFile } from "node:child_process";
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { expect, test } from "@playwright/test";
import type { GenerationResult } from "../../src/engine/types.ts";
import { cpuGeneration } from "../browser/support/expected.ts";
import { startServer, type TestServer } from "../browser/support/server.ts";
import { syntheticModelPath } from "../node/support/fixtures.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TEMPLATE = join(ROOT, "test", "package", "app");
const PROMPT = "Hello there";
const run = promisify(execFile);

interface Generated {
  readonly text: string;
  readonly tokens: readonly number[];
  readonly description: string;
}

test.describe.configure({ mode: "serial" });

let work: string;
let app: string;
let tarball: string;
let expected: GenerationResult;
let server: TestServer | undefined;

/** Runs a command, failing with its output when it fails. */
async function sh(cmd: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const out = e instanceof Error && "stdout" in e && "stderr" in e ? `\n${String(e.stdout)}\n${String(e.stderr)}` : "";
    throw new Error(`${cmd} ${args.join(" ")} failed in ${cwd}: ${e instanceof Error ? e.message : String(e)}${out}`);
  }
}

function lastJsonLine(stdout: string): Generated {
  const line = stdout.trim().split("\n").filter((l) => l.startsWith("{")).at(-1);
  if (!line) throw new Error(`no JSON line in output:\n${stdout}`);
  return JSON.parse(line) as Generated;
}

test.beforeAll(async () => {
  test.setTimeout(600_000);
  const model = await syntheticModelPath("llama", "Q8_0");
  expected = await cpuGeneration(model, PROMPT, { temperature: 0, maxTokens: 8, ignoreEos: true });

  work = mkdtempSync(join(tmpdir(), "gguf-webgpu-package-"));
  // `npm pack` builds dist/ itself (the prepack script), as `npm publish` does.
  const packed = await sh("npm", ["pack", "--silent", "--pack-destination", work], ROOT);
  tarball = join(work, packed.trim().split("\n").at(-1)!);

  app = join(work, "app");
  cpSync(TEMPLATE, app, { recursive: true });
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }, null, 2));
  await sh("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", tarball, "@webgpu/types@0.1.74"], app);
  copyFileSync(model, join(app, "model.gguf"));
});

test.afterAll(async () => {
  await server?.close();
  if (work && !process.env.KEEP_PACKAGE_TEST) rmSync(work, { recursive: true, force: true });
});

test("the tarball holds the built library and nothing of the repository's internals", async () => {
  const files = (await sh("tar", ["-tzf", tarball], work)).trim().split("\n");
  for (const f of [
    "package/package.json",
    "package/README.md",
    "package/dist/index.js",
    "package/dist/index.d.ts",
    "package/dist/worker/worker.js",
    "package/dist/worker/client.d.ts",
    "package/dist/gpu/shaders.generated.js",
  ]) {
    expect(files).toContain(f);
  }
  const stray = files.filter((f) => /^package\/(src|test|demo|models|tools|scripts|dist\/demo)\/|\.gguf$|\.ts$/.test(f) && !f.endsWith(".d.ts"));
  expect(stray).toEqual([]);
});

test("npm pack in a clean copy of the tree (no dist/) embeds the shaders and builds the library first", async () => {
  // What a fresh clone has: the tracked files and the new ones git does not ignore.
  const clean = join(work, "clean");
  const listed = await sh("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], ROOT);
  // Plain files only: a path deleted in the working tree, or a link such as a symlinked
  // node_modules, is not part of a clone.
  const isFile = (f: string) => existsSync(join(ROOT, f)) && lstatSync(join(ROOT, f)).isFile();
  for (const file of listed.split("\0").filter((f) => f !== "" && isFile(f))) {
    mkdirSync(dirname(join(clean, file)), { recursive: true });
    copyFileSync(join(ROOT, file), join(clean, file));
  }
  expect(existsSync(join(clean, "dist"))).toBe(false);
  // The build's TypeScript and the dependencies' types, without a registry install.
  symlinkSync(join(ROOT, "node_modules"), join(clean, "node_modules"));
  const stdout = await sh("npm", ["pack", "--dry-run", "--json"], clean);
  // The JSON report follows the prepack script's own output.
  const report = JSON.parse(stdout.slice(stdout.search(/^\[$/m))) as { files: { path: string }[] }[];
  const files = report[0]?.files.map((f) => f.path) ?? [];
  for (const f of ["dist/index.js", "dist/index.d.ts", "dist/worker/worker.js", "dist/gpu/shaders.generated.js"]) {
    expect(files).toContain(f);
  }
});

test("TypeScript in the consumer project type-checks against the package's declarations", async () => {
  await sh(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], app);
});

test("the declarations compile with a browser project's plain lib (ES2022, DOM: no ESNext.Disposable)", async () => {
  await sh(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.plain-lib.json"], app);
});

test("Dawn (webgpu) is an optional peer: not installed with the package; Node asking for WebGPU is told to install it", async () => {
  const manifest = JSON.parse(readFileSync(join(app, "node_modules", "gguf-webgpu", "package.json"), "utf8")) as Record<string, unknown>;
  expect(manifest.peerDependenciesMeta).toEqual({ webgpu: { optional: true } });
  expect(existsSync(join(app, "node_modules", "webgpu"))).toBe(false);
  const got = JSON.parse((await sh(process.execPath, ["node-webgpu.mjs", "model.gguf"], app)).trim().split("\n").at(-1)!) as {
    name?: string;
    message?: string;
  };
  expect(got.name).toBe("GpuError");
  expect(got.message).toMatch(/npm install webgpu/);
});

test("Node imports the package by name and generates (CPU backend)", async () => {
  const got = lastJsonLine(await sh(process.execPath, ["node-main.mjs", "model.gguf", PROMPT], app));
  expect(got.tokens).toEqual(expected.tokens);
  expect(got.text).toBe(expected.text);
});

test("Deno imports the package by name and generates on WebGPU (lavapipe) and on the CPU", async () => {
  const env = { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp", NO_COLOR: "1" };
  for (const backend of ["cpu", "webgpu"]) {
    const got = lastJsonLine(await sh("deno", ["run", "-A", "deno-main.ts", "model.gguf", backend, PROMPT], app, env));
    expect(got.description).toContain(backend === "cpu" ? "cpu" : "webgpu");
    expect(got.tokens, `${backend}: ${got.description}`).toEqual(expected.tokens);
    expect(got.text).toBe(expected.text);
  }
});

test("a Vite page built on the package generates in Chromium, in the page (WebGPU) and in its worker", async ({ page }) => {
  await sh(process.execPath, [join(ROOT, "node_modules", "vite", "bin", "vite.js"), "build", "--logLevel", "warn"], app);
  const dist = join(app, "dist");
  copyFileSync(join(app, "model.gguf"), join(dist, "model.gguf"));
  expect(readdirSync(join(dist, "assets")).some((f) => f.startsWith("worker"))).toBe(true);
  server = await startServer({ root: dist });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${server.origin}/?prompt=${encodeURIComponent(PROMPT)}`);
  await expect(page.locator("body")).toHaveAttribute("data-done", /ok|error/, { timeout: 240_000 });
  const failure = await page.evaluate(() => JSON.stringify(Reflect.get(window, "__error") ?? null));
  expect(failure).toBe("null");
  const result = await page.evaluate(() => JSON.stringify(Reflect.get(window, "__result")));
  const { inThread, inWorker } = JSON.parse(result) as {
    inThread: Generated;
    inWorker: Generated & { errorIsLlmError: boolean; errorName: string };
  };
  expect(inThread.description).toContain("webgpu");
  expect(inThread.tokens).toEqual(expected.tokens);
  expect(inThread.text).toBe(expected.text);
  expect(inWorker.description).toContain("cpu");
  expect(inWorker.tokens).toEqual(expected.tokens);
  expect(inWorker.text).toBe(expected.text);
  // An error thrown in the worker arrives as the package's own class.
  expect([inWorker.errorIsLlmError, inWorker.errorName]).toEqual([true, "InvalidRequestError"]);
  expect(errors).toEqual([]);
});
