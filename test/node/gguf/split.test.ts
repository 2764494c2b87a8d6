/**
 * Split files: written in 2 and 3 shards like llama.cpp's gguf-split, read back identical
 * to the unsplit file, loaded by llama.cpp itself, and refused clearly when incomplete.
 */
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LlmError } from "../../../src/errors.ts";
import { GGUFValueType } from "../../../src/gguf/metadata.ts";
import { type GGUFFile, openGGUF } from "../../../src/gguf/reader.ts";
import { writeGGUFFile } from "../../../src/gguf/writer.ts";
import { loadLlamaCppModel } from "../support/llamacpp.ts";
import { tinyModelSpec } from "./fixtures.ts";

let dir: string;
const spec = tinyModelSpec({ nLayers: 2, seed: 5 });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gguf-split-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function tensorBytes(file: GGUFFile): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const t of file.tensors) out.set(t.name, await file.readTensor(t));
  return out;
}

async function openError(input: string): Promise<LlmError> {
  try {
    await openGGUF(input);
  } catch (err) {
    if (err instanceof LlmError) return err;
    throw err;
  }
  throw new Error("opened without error");
}

describe("split files", () => {
  for (const count of [2, 3]) {
    it(`${count} shards read back identical to the single file`, async () => {
      const [single] = await writeGGUFFile(join(dir, `whole-${count}.gguf`), spec);
      const paths = await writeGGUFFile(join(dir, `parts${count}.gguf`), spec, { split: count });
      expect(paths).toEqual(
        Array.from({ length: count }, (_, i) => join(dir, `parts${count}-0000${i + 1}-of-0000${count}.gguf`)),
      );
      const whole = await openGGUF(single ?? "");
      const split = await openGGUF(paths[0] ?? "");
      expect(split.shardCount).toBe(count);
      expect(new Set(split.tensors.map((t) => t.shard))).toEqual(new Set(Array.from({ length: count }, (_, i) => i)));
      expect(split.tensors.map((t) => [t.name, t.type, t.shape])).toEqual(whole.tensors.map((t) => [t.name, t.type, t.shape]));
      expect(await tensorBytes(split)).toEqual(await tensorBytes(whole));
      // Same metadata plus the three split keys, typed as llama.cpp reads them.
      const { "split.no": no, "split.count": n, "split.tensors.count": total, ...rest } = split.metadata;
      expect(rest).toEqual(whole.metadata);
      expect([no, n, total]).toEqual([0, count, whole.tensors.length]);
      expect(split.metadataTypes["split.count"]).toEqual({ type: GGUFValueType.UINT16 });
      expect(split.metadataTypes["split.tensors.count"]).toEqual({ type: GGUFValueType.INT32 });
      expect(split.fileSize).toBeGreaterThan(whole.fileSize); // each shard has its own header
      await Promise.all([whole.close(), split.close()]);
    });
  }

  it("llama.cpp loads the single and the split model alike", async () => {
    const [single] = await writeGGUFFile(join(dir, "llama-whole.gguf"), spec);
    const [first] = await writeGGUFFile(join(dir, "llama-split.gguf"), spec, { split: 3 });
    for (const path of [single ?? "", first ?? ""]) {
      const model = await loadLlamaCppModel(path);
      try {
        expect(model.tokens.bos).toBe(256);
        expect(model.embeddingVectorSize).toBe(64);
        expect(model.tokenize("hi")).toEqual(["h".charCodeAt(0), "i".charCodeAt(0)]);
      } finally {
        await model.dispose();
      }
    }
  });

  it("a middle shard alone, a renamed first shard and a missing shard are refused", async () => {
    const paths = await writeGGUFFile(join(dir, "bad.gguf"), spec, { split: 3 });
    const middle = await openError(paths[1] ?? "");
    expect(middle.code).toBe("GGUF_SPLIT");
    expect(middle.message).toContain("shard 2 of 3");

    const renamed = join(dir, "renamed.gguf");
    await copyFile(paths[0] ?? "", renamed);
    expect((await openError(renamed)).code).toBe("GGUF_SPLIT");

    await rm(paths[2] ?? "");
    const missing = await openError(paths[0] ?? "");
    expect(missing.code).toBe("NOT_FOUND");
    expect(missing.message).toContain("bad-00003-of-00003.gguf");
  });

  it("shards that disagree about the split are refused", async () => {
    const a = await writeGGUFFile(join(dir, "mix.gguf"), spec, { split: 2 });
    const b = await writeGGUFFile(join(dir, "other.gguf"), tinyModelSpec({ nLayers: 1 }), { split: 3 });
    // Put shard 2 of a 3-way split where shard 2 of 2 belongs.
    await copyFile(b[1] ?? "", a[1] ?? "");
    expect((await openError(a[0] ?? "")).code).toBe("GGUF_SPLIT");
  });
});
