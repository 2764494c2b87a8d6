import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/node/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Two cores: llama.cpp and the reference are CPU-bound; run files one at a time.
    fileParallelism: false,
  },
});
