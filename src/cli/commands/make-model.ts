/**
 * `deno task cli make-model --arch A --preset P --quant Q --out FILE [--seed N]`: writes a
 * synthetic GGUF model (random weights, real names, shapes and metadata), streaming one
 * tensor at a time so the 1B presets fit in memory.
 */
import { stat } from "node:fs/promises";
import { InvalidArgumentError } from "../../errors.ts";
import { isQuantMix, QUANT_MIXES } from "../../gguf/quant-mix.ts";
import type { Architecture } from "../../model/config.ts";
import {
  presetArchitecture,
  SYNTHETIC_ARCHS,
  SYNTHETIC_PRESETS,
  syntheticModelConfig,
  type SyntheticPreset,
  writeSyntheticModel,
} from "../../model/synthetic.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { formatBytes } from "./inspect.ts";

const SPEC = {
  name: "make-model",
  summary: "Writes a GGUF model with random weights and the real shapes of an architecture (for tests and benchmarks).",
  flags: {
    arch: {
      type: "string",
      placeholder: SYNTHETIC_ARCHS.join("|"),
      description: "architecture (default: the preset's; llama for tiny)",
    },
    preset: { type: "string", default: "tiny", placeholder: SYNTHETIC_PRESETS.join("|"), description: "model shape" },
    quant: {
      type: "string",
      required: true,
      placeholder: QUANT_MIXES.join("|"),
      description: "weight types (llama.cpp mix name)",
    },
    out: { type: "string", required: true, placeholder: "file.gguf", description: "where to write the model" },
    seed: {
      type: "number",
      integer: true,
      min: 0,
      max: 0xffffffff,
      default: 1,
      placeholder: "n",
      description: "seed of the weights",
    },
    distinctRows: {
      type: "number",
      integer: true,
      min: 1,
      placeholder: "n",
      description: "make only n rows of each matrix and repeat them (fast files for speed benchmarks)",
    },
  },
} as const;

function isPreset(value: string): value is SyntheticPreset {
  return (SYNTHETIC_PRESETS as readonly string[]).includes(value);
}

function isArchitecture(value: string): value is Architecture {
  return (SYNTHETIC_ARCHS as readonly string[]).includes(value);
}

/** The `make-model` command. */
export const makeModelCommand: CliCommand = defineCommand(
  SPEC,
  "write a synthetic GGUF model (random weights, real shapes)",
  async (f) => {
    if (!isPreset(f.preset)) {
      throw new InvalidArgumentError(
        "--preset",
        `"${f.preset}" is not one of ${SYNTHETIC_PRESETS.join(", ")}`,
      );
    }
    if (!isQuantMix(f.quant)) {
      throw new InvalidArgumentError(
        "--quant",
        `"${f.quant}" is not one of ${QUANT_MIXES.join(", ")}`,
      );
    }
    const arch = f.arch ?? presetArchitecture(f.preset) ?? "llama";
    if (!isArchitecture(arch)) {
      throw new InvalidArgumentError(
        "--arch",
        `"${arch}" is not one of ${SYNTHETIC_ARCHS.join(", ")}`,
      );
    }
    const config = syntheticModelConfig(arch, f.preset);
    const started = performance.now();
    await writeSyntheticModel(f.out, { arch, preset: f.preset, quant: f.quant, seed: f.seed, distinctRows: f.distinctRows });
    const seconds = (performance.now() - started) / 1000;
    const size = (await stat(f.out)).size;
    console.log(
      `wrote ${f.out}: ${config.name} ${f.quant}, ${config.nLayers} layers, n_embd ${config.nEmbd}, ` +
        `vocab ${config.vocabSize}, ${formatBytes(size)} in ${seconds.toFixed(1)} s`,
    );
    return 0;
  },
);
