/**
 * Synthetic GGUF models for tests, built on first use and cached under test/.cache/
 * (gitignored). The cache key includes a hash of the code that produces the bytes
 * (generator, writer, quantizers, tokenizer metadata), so a change there rebuilds the
 * files instead of testing stale ones.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, stat } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { Architecture } from "../../../src/model/config.ts";
import type { QuantMix } from "../../../src/gguf/quant-mix.ts";
import { type SyntheticPreset, writeSyntheticModel } from "../../../src/model/synthetic.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
/** Where built fixtures live. */
export const CACHE_DIR = join(ROOT, "test", ".cache", "synthetic");

/** Source files and folders whose content decides a synthetic file's bytes. */
const GENERATOR_SOURCES = [
  "src/model/synthetic.ts",
  "src/model/reference-rope.ts",
  "src/model/config.ts",
  "src/model/arch", // each family's tensors and the constants its presets derive from metadata
  "src/gguf", // writer, quantizers, quant mixes, type table
  "src/tokenizer", // synthetic vocabularies: corpus, pre-tokenizers, BPE training
];

let generatorHash: Promise<string> | undefined;
const building = new Map<string, Promise<string>>();

async function filesUnder(path: string): Promise<string[]> {
  const info = await stat(path);
  if (!info.isDirectory()) return [path];
  const entries = (await readdir(path)).sort();
  return (await Promise.all(entries.map((e) => filesUnder(join(path, e))))).flat();
}

/** A short hash of every generator source, file names included. */
function hashGenerator(): Promise<string> {
  generatorHash ??= (async () => {
    const hash = createHash("sha256");
    for (const source of GENERATOR_SOURCES) {
      for (const file of await filesUnder(join(ROOT, source))) {
        hash.update(relative(ROOT, file)).update("\0").update(await readFile(file)).update("\0");
      }
    }
    return hash.digest("hex").slice(0, 12);
  })();
  return generatorHash;
}

/**
 * Path of a synthetic model file (built and cached on first use).
 * @param preset `tiny` by default; the real-size presets take seconds to minutes to build.
 */
export async function syntheticModelPath(
  arch: Architecture,
  quant: QuantMix,
  preset: SyntheticPreset = "tiny",
  seed = 1,
): Promise<string> {
  const path = join(CACHE_DIR, `${preset}-${arch}-${quant}-s${seed}-${await hashGenerator()}.gguf`);
  let pending = building.get(path);
  if (!pending) {
    pending = buildOnce(path, arch, quant, preset, seed);
    building.set(path, pending);
  }
  return pending;
}

async function buildOnce(
  path: string,
  arch: Architecture,
  quant: QuantMix,
  preset: SyntheticPreset,
  seed: number,
): Promise<string> {
  if (await exists(path)) return path;
  await mkdir(CACHE_DIR, { recursive: true });
  // Written under a private name and renamed, so a concurrent test process never reads a
  // half-written file.
  const partial = `${path}.${process.pid}.partial`;
  await writeSyntheticModel(partial, { arch, preset, quant, seed });
  await rename(partial, path);
  return path;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
