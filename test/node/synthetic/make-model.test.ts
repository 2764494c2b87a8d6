/**
 * `make-model`: the CLI writes what `writeSyntheticModel` writes, the seed decides the
 * bytes, and bad flag combinations are refused before anything is written.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { makeModelCommand } from "../../../src/cli/commands/make-model.ts";
import { InvalidArgumentError } from "../../../src/errors.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { modelConfigFromGGUF } from "../../../src/model/config.ts";
import { syntheticModelConfig, writeSyntheticModel } from "../../../src/model/synthetic.ts";

async function sha256(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

async function quietly(args: string[]): Promise<number> {
  const log = vi.spyOn(console, "log").mockImplementation(() => {});
  try {
    return await makeModelCommand.run(args);
  } finally {
    log.mockRestore();
  }
}

describe("make-model", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "make-model-"));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("writes the synthetic model; the same seed gives the same bytes, another seed others", async () => {
    const out = join(dir, "cli.gguf");
    expect(await quietly(["--arch", "qwen3", "--preset", "tiny", "--quant", "Q4_0", "--out", out, "--seed", "3"])).toBe(0);
    const direct = join(dir, "direct.gguf");
    await writeSyntheticModel(direct, { arch: "qwen3", preset: "tiny", quant: "Q4_0", seed: 3 });
    const other = join(dir, "other.gguf");
    await writeSyntheticModel(other, { arch: "qwen3", preset: "tiny", quant: "Q4_0", seed: 4 });
    expect(await sha256(out)).toBe(await sha256(direct));
    expect(await sha256(out)).not.toBe(await sha256(other));
    expect((await stat(out)).size).toBe((await stat(other)).size);

    const file = await openGGUF(out);
    try {
      const config = modelConfigFromGGUF(file);
      const expected = syntheticModelConfig("qwen3", "tiny");
      expect({ ...config, normEps: expected.normEps }).toEqual(expected);
    } finally {
      await file.close();
    }
  });

  it("--distinct-rows: each matrix is its first rows, as the full file has them, repeated", async () => {
    const full = join(dir, "full.gguf");
    const fast = join(dir, "fast.gguf");
    await writeSyntheticModel(full, { arch: "llama", preset: "tiny", quant: "Q4_K_M", seed: 5 });
    expect(await quietly(["--preset", "tiny", "--quant", "Q4_K_M", "--out", fast, "--seed", "5", "--distinct-rows", "3"])).toBe(0);
    expect((await stat(fast)).size).toBe((await stat(full)).size);
    const [a, b] = [await openGGUF(full), await openGGUF(fast)];
    try {
      let matrices = 0;
      for (const info of a.tensors) {
        const [x, y] = [await a.readTensor(info.name), await b.readTensor(info.name)];
        const rows = info.shape.length === 2 ? Number(info.shape[1]) : 1;
        if (rows <= 3) {
          expect(y, info.name).toEqual(x);
          continue;
        }
        matrices++;
        const rowBytes = x.length / rows;
        const head = x.subarray(0, 3 * rowBytes);
        expect(y.subarray(0, 3 * rowBytes), info.name).toEqual(head);
        for (let r = 3; r < rows; r += 3) {
          expect(y.subarray(r * rowBytes, Math.min(rows, r + 3) * rowBytes), `${info.name} rows ${r}..`).toEqual(head.subarray(0, (Math.min(rows, r + 3) - r) * rowBytes));
        }
      }
      expect(matrices).toBeGreaterThan(4);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("refuses a preset of another architecture and unknown names", async () => {
    const out = join(dir, "refused.gguf");
    await expect(quietly(["--arch", "qwen2", "--preset", "llama-3.2-1b", "--quant", "F16", "--out", out])).rejects.toThrow(
      InvalidArgumentError,
    );
    await expect(quietly(["--preset", "tiny", "--quant", "Q3_K", "--out", out])).rejects.toThrow(/--quant/);
    await expect(quietly(["--preset", "huge", "--quant", "F16", "--out", out])).rejects.toThrow(/--preset/);
    await expect(quietly(["--arch", "gpt2", "--quant", "F16", "--out", out])).rejects.toThrow(/--arch/);
    await expect(stat(out)).rejects.toThrow();
  });
});
