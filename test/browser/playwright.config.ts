/**
 * Browser tests: the built demo (dist/demo, `npm run build:demo` first; `npm run test:browser`
 * does both) in Debian's Chromium, where WebGPU runs on SwiftShader (Vulkan on the CPU).
 * Never `playwright install`: the system Chromium is the browser under test.
 *
 * Results: a list on stdout, and Playwright's JSON report in test-results/browser.json
 * (`stats.expected` passed, `stats.unexpected` failed) for test/run-all.sh to sum.
 * Screenshots land in test-results/browser/.
 */
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { defineConfig } from "@playwright/test";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Chromium flags that bring WebGPU up headless on SwiftShader, with nothing phoning home. */
export const CHROMIUM_ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--headless=new",
  "--use-angle=swiftshader",
  "--enable-features=Vulkan",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

export default defineConfig({
  testDir: ".",
  testMatch: "*.spec.ts",
  outputDir: join(ROOT, "test-results", "browser"),
  // SwiftShader compiles the model's kernels in about half a minute per load.
  timeout: 240_000,
  expect: { timeout: 30_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  forbidOnly: true,
  reporter: [
    ["list"],
    ["json", { outputFile: process.env.BROWSER_REPORT ?? join(ROOT, "test-results", "browser.json") }],
  ],
  use: {
    browserName: "chromium",
    launchOptions: { executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS },
    viewport: { width: 1280, height: 800 },
    trace: "off",
  },
});
