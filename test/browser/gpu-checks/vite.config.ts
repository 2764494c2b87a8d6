/**
 * Bundles the GPU check page (index.html → page.ts → the project's src modules) into
 * .cache/gpu-checks/site. The spec builds it in its beforeAll; by hand:
 * `npx vite build --config test/browser/gpu-checks/vite.config.ts`.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const HERE = dirname(fileURLToPath(import.meta.url));

/** Where the built page lands (git-ignored). */
export const GPU_CHECKS_SITE = resolve(HERE, "..", "..", "..", ".cache", "gpu-checks", "site");

// As in demo/vite.config.ts: `node:*` imports sit behind path-only branches the page never
// takes, and class names are kept because errors report `new.target.name`.
const rolldownOptions = { external: [/^node:/], output: { keepNames: true } };

export default defineConfig({
  root: HERE,
  base: "./",
  logLevel: "warn",
  build: {
    outDir: GPU_CHECKS_SITE,
    emptyOutDir: true,
    target: "es2022",
    minify: false,
    cssMinify: false,
    rolldownOptions,
  },
  publicDir: false,
});
