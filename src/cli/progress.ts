/**
 * Progress bars on stderr, drawn only when it is a terminal (so `--json` output, pipes and
 * logs stay clean): the model load of every model-running command, and `make-model`.
 */
import process from "node:process";
import type { LoadProgress } from "../engine/types.ts";
import { formatBytes } from "./format.ts";

/** Where a long task stands: bytes and tensors done out of their totals. */
export interface TaskProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
  readonly tensorsDone: number;
  readonly tensorsTotal: number;
}

/** A bar that redraws one line, and a way to clear it. */
export interface ProgressBar {
  update(progress: TaskProgress): void;
  done(): void;
}

/** The line of a bar: `label ████░░░░  42%  1.20 MiB / 2.56 MiB  tensors 12/38`. */
export function progressLine(label: string, p: TaskProgress, width = 30): string {
  const fraction = p.bytesTotal > 0 ? Math.min(1, p.bytesDone / p.bytesTotal) : 0;
  const filled = Math.round(fraction * width);
  const bar = "█".repeat(filled) + "░".repeat(width - filled);
  return `${label} ${bar} ${(fraction * 100).toFixed(0).padStart(3)}%  ` +
    `${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}  tensors ${p.tensorsDone}/${p.tensorsTotal}`;
}

/** A bar labelled `label` on stderr when it is a terminal; does nothing otherwise. */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  if (!stream.isTTY) return { update: () => {}, done: () => {} };
  let drawn = false;
  return {
    update(p) {
      stream.write(`\r${progressLine(label, p)}\x1b[K`);
      drawn = true;
    },
    done() {
      if (drawn) stream.write("\r\x1b[K");
      drawn = false;
    },
  };
}

/** A progress callback for `EngineOptions.onProgress`, and a way to end the bar. */
export function loadProgressBar(): { onProgress: (p: LoadProgress) => void; done: () => void } {
  const bar = progressBar("loading");
  return {
    onProgress: (p) =>
      bar.update({ bytesDone: p.bytesLoaded, bytesTotal: p.bytesTotal, tensorsDone: p.tensorsLoaded, tensorsTotal: p.tensorsTotal }),
    done: () => bar.done(),
  };
}
