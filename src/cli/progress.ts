/**
 * The model-loading progress bar: drawn on stderr when it is a terminal, silent otherwise
 * (so `--json` output and pipes stay clean).
 */
import process from "node:process";
import type { LoadProgress } from "../engine/types.ts";
import { formatBytes } from "./format.ts";

/** A progress callback for `EngineOptions.onProgress`, and a way to end the bar. */
export function loadProgressBar(): { onProgress: (p: LoadProgress) => void; done: () => void } {
  const stream = process.stderr;
  if (!stream.isTTY) return { onProgress: () => {}, done: () => {} };
  let drawn = false;
  const onProgress = (p: LoadProgress) => {
    const fraction = p.bytesTotal > 0 ? Math.min(1, p.bytesLoaded / p.bytesTotal) : 0;
    const width = 30;
    const filled = Math.round(fraction * width);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    const line = `loading ${bar} ${(fraction * 100).toFixed(0).padStart(3)}%  ` +
      `${formatBytes(p.bytesLoaded)} / ${formatBytes(p.bytesTotal)}  ` +
      `tensors ${p.tensorsLoaded}/${p.tensorsTotal}`;
    stream.write(`\r${line}\x1b[K`);
    drawn = true;
  };
  const done = () => {
    if (drawn) stream.write("\r\x1b[K");
    drawn = false;
  };
  return { onProgress, done };
}
