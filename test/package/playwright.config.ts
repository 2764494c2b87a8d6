/**
 * The package test (`npm run test:package`): see package.spec.ts. Needs npm (the registry or
 * its cache, for the package's two dependencies), Deno, Mesa's lavapipe and Debian's Chromium.
 *
 * Results: a list on stdout, and Playwright's JSON report in test-results/package.json
 * (`stats.expected` passed, `stats.unexpected` failed) for test/run-all.sh to sum.
 */
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { defineConfig } from "@playwright/test";
import { CHROMIUM_ARGS } from "../browser/playwright.config.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export default defineConfig({
  testDir: ".",
  testMatch: "*.spec.ts",
  outputDir: join(ROOT, "test-results", "package"),
  timeout: 300_000,
  expect: { timeout: 30_000 },
  workers: 1,
  retries: 0,
  forbidOnly: true,
  reporter: [
    ["list"],
    ["json", { outputFile: process.env.PACKAGE_REPORT ?? join(ROOT, "test-results", "package.json") }],
  ],
  use: {
    browserName: "chromium",
    launchOptions: { executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS },
  },
});
