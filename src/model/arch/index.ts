/**
 * The registry of architectures: `general.architecture` → its file. Adding a family is
 * one file in this folder plus a line here (and any kernel it needs).
 */
import { ModelConfigError } from "../../errors.ts";
import { gemma2 } from "./gemma2.ts";
import { gemma3 } from "./gemma3.ts";
import { granite } from "./granite.ts";
import { llama } from "./llama.ts";
import { olmo2 } from "./olmo2.ts";
import { phi3 } from "./phi3.ts";
import { qwen2 } from "./qwen2.ts";
import { qwen3 } from "./qwen3.ts";
import { smollm3 } from "./smollm3.ts";
import type { ArchitectureDef } from "./types.ts";

export * from "./types.ts";

/** Every architecture the runtime runs, by `general.architecture`. */
export const ARCHITECTURES = { llama, qwen2, qwen3, smollm3, gemma2, gemma3, phi3, granite, olmo2 } as const satisfies Record<string, ArchitectureDef>;

/** Architectures the runtime runs. */
export type Architecture = keyof typeof ARCHITECTURES;

/** Their names, in registry order. */
export const ARCHITECTURE_NAMES = Object.keys(ARCHITECTURES) as readonly Architecture[];

/** Whether `name` is an architecture the runtime runs. */
export function isArchitecture(name: string): name is Architecture {
  return Object.hasOwn(ARCHITECTURES, name);
}

/** The file of `name`; ModelConfigError on `general.architecture` listing the supported ones. */
export function architecture(name: string): ArchitectureDef {
  if (!isArchitecture(name)) {
    throw new ModelConfigError("general.architecture", `"${name}" is not supported (${ARCHITECTURE_NAMES.join(", ")})`);
  }
  return ARCHITECTURES[name];
}
