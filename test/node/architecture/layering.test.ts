/**
 * The import graph of src/ flows one way: doors (cli, server, worker) → engine → model →
 * gpu / gguf / tokenizer / sampling → errors. Read from the source files themselves, so a
 * new upward import (the circle engine ↔ model that once existed) fails here.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = resolve(import.meta.dirname, "../../../src");

/** A layer may import its own layer and any lower one. */
const RANK: Record<string, number> = {
  "errors.ts": 0,
  "yield.ts": 0,
  "timeout.ts": 0,
  "disposable-types.ts": 0,
  sampling: 1,
  gguf: 1,
  tokenizer: 1,
  grammar: 1,
  gpu: 2,
  model: 3,
  engine: 4,
  server: 5,
  worker: 5,
  cli: 6,
  "index.ts": 7,
};

function layerOf(file: string): string {
  return relative(SRC, file).split("/")[0]!;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith(".ts") ? [path] : [];
  });
}

/** Relative imports (static, dynamic, and `export … from`) of one file, resolved to paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const specifiers = [...text.matchAll(/(?:from\s+|import\(\s*)["'](\.[^"']+)["']/g)].map((m) => m[1]!);
  return specifiers.map((s) => resolve(dirname(file), s));
}

describe("src/ layering", () => {
  const files = sourceFiles(SRC);

  it("knows every top-level folder and file of src/", () => {
    const unknown = [...new Set(files.map(layerOf))].filter((l) => !(l in RANK));
    expect(unknown, "give new top-level modules a rank in this test").toEqual([]);
  });

  it("has no import from a lower layer into a higher one", () => {
    const upward: string[] = [];
    for (const file of files) {
      const from = layerOf(file);
      for (const target of importsOf(file)) {
        const to = layerOf(target);
        if ((RANK[to] ?? 0) > (RANK[from] ?? 0)) upward.push(`${relative(SRC, file)} → ${relative(SRC, target)}`);
      }
    }
    expect(upward).toEqual([]);
  });
});
