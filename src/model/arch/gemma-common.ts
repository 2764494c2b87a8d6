/**
 * What the gemma families share (llama.cpp's src/models/gemma2.cpp, gemma3.cpp): the
 * sliding-window layer pattern, the soft-caps and their metadata keys.
 */
import { ModelConfigError } from "../../errors.ts";
import { getArray, getInteger, getNumber, hasKey, type Metadata } from "../../gguf/metadata.ts";

/**
 * Which layers attend through the sliding window, as llama.cpp's `load_swa_pattern`:
 * `attention.sliding_window_pattern` as an array of booleans (one per layer), else as a
 * period n (default `defaultPeriod`) where layer il slides when il % n < n − 1 (gemma2's 2:
 * even layers; gemma3's 6: five of every six).
 */
export function slidingLayers(m: Metadata, key: (suffix: string) => string, nLayers: number, defaultPeriod: number): boolean[] {
  const patternKey = key("attention.sliding_window_pattern");
  if (hasKey(m, patternKey) && Array.isArray(m[patternKey])) {
    const flags = getArray(m, patternKey);
    if (flags.length !== nLayers || flags.some((f) => typeof f !== "boolean")) {
      throw new ModelConfigError(patternKey, `expected ${nLayers} booleans (one per layer), found ${flags.length} values`);
    }
    return flags as boolean[];
  }
  const period = getInteger(m, patternKey, defaultPeriod);
  return Array.from({ length: nLayers }, (_, il) => period === 0 || il % period < period - 1);
}

/** A positive finite number at `key`, or `fallback`. */
export function positiveScalar(m: Metadata, key: string, fallback: number): number {
  const n = getNumber(m, key, fallback);
  if (!(Number.isFinite(n) && n > 0)) throw new ModelConfigError(key, `expected a positive number, found ${n}`);
  return n;
}

/** The sliding window in positions (`attention.sliding_window`, default `fallback`). */
export function slidingWindow(m: Metadata, key: (suffix: string) => string, fallback: number): number {
  return getInteger(m, key("attention.sliding_window"), fallback, 1);
}
