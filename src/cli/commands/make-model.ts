/**
 * `deno task cli make-model --arch A --preset P --quant Q --out FILE [--seed N] [--pooling mean|cls|last]`: writes a
 * synthetic GGUF model (random weights, real names, shapes and metadata), streaming one
 * tensor at a time so the 1B presets fit in memory. On a terminal, a bar on stderr counts
 * the tensors and bytes written.
 */
import { stat } from "node:fs/promises";
import { InvalidArgumentError } from "../../errors.ts";
import { isQuantMix, QUANT_MIXES } from "../../gguf/quant-mix.ts";
import type { Architecture } from "../../model/config.ts";
import { tensorByteLength } from "../../gguf/ggml-type.ts";
import { meta, type TensorSpec, writeGGUFFile } from "../../gguf/writer.ts";
import { isPooling, poolingTypeCode } from "../../engine/embed.ts";
import {
  presetArchitecture,
  SYNTHETIC_ARCHS,
  SYNTHETIC_PRESETS,
  syntheticMetadata,
  syntheticModelConfig,
  type SyntheticModelSpec,
  type SyntheticPreset,
  syntheticTensorSpecs,
} from "../../model/synthetic.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { formatBytes } from "../format.ts";
import { type ProgressBar, progressBar } from "../progress.ts";

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
    pooling: {
      type: "string",
      placeholder: "mean|cls|last",
      description: "write <arch>.pooling_type, how embeddings pool the hidden states (default: none written, which embeds with last)",
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

/**
 * `tensors` with their data counted on `bar` once made: the 1B presets take minutes, as
 * every weight is drawn and quantized.
 */
function withProgress(tensors: readonly TensorSpec[], bar: ProgressBar): TensorSpec[] {
  const bytesTotal = tensors.reduce((sum, t) => sum + tensorByteLength(t.type, t.shape.reduce((a, b) => a * b, 1)), 0);
  let bytesDone = 0;
  let tensorsDone = 0;
  const report = () => bar.update({ bytesDone, bytesTotal, tensorsDone, tensorsTotal: tensors.length });
  report();
  return tensors.map((t) => ({
    ...t,
    data: async () => {
      const bytes = typeof t.data === "function" ? await t.data() : t.data;
      bytesDone += bytes.byteLength;
      tensorsDone++;
      report();
      return bytes;
    },
  }));
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
    if (f.pooling !== undefined && !isPooling(f.pooling)) {
      throw new InvalidArgumentError("--pooling", `"${f.pooling}" is not one of mean, cls, last`);
    }
    const pooling = f.pooling === undefined ? [] : [[`${arch}.pooling_type`, meta.u32(poolingTypeCode(f.pooling))] as const];
    const config = syntheticModelConfig(arch, f.preset);
    const spec: SyntheticModelSpec = { arch, preset: f.preset, quant: f.quant, seed: f.seed, distinctRows: f.distinctRows };
    const started = performance.now();
    const bar = progressBar("writing");
    try {
      // What writeSyntheticModel writes, with each tensor counted as it is made.
      await writeGGUFFile(f.out, {
        metadata: [...syntheticMetadata(config, f.quant), ...pooling],
        tensors: withProgress(syntheticTensorSpecs(spec), bar),
      });
    } finally {
      bar.done();
    }
    const seconds = (performance.now() - started) / 1000;
    const size = (await stat(f.out)).size;
    console.log(
      `wrote ${f.out}: ${config.name} ${f.quant}, ${config.nLayers} layers, n_embd ${config.nEmbd}, ` +
        `vocab ${config.vocabSize}, ${formatBytes(size)} in ${seconds.toFixed(1)} s`,
    );
    return 0;
  },
);
