/**
 * The load progress block: phase, bar, bytes, speed and time left. Speed is measured over
 * the last few seconds (not since the start), so it follows the network as it changes.
 */
import type { WorkerLoadProgress } from "./runtime.ts";
import { byId } from "./dom.ts";
import { formatBytes, formatDuration, formatRate } from "./format.ts";

const WINDOW_MS = 3000;

const PHASE_LABELS: Record<WorkerLoadProgress["phase"], string> = {
  download: "Downloading",
  open: "Reading the model header",
  weights: "Loading weights",
  ready: "Ready",
};

export class ProgressView {
  readonly #root = byId("progress", HTMLDivElement);
  readonly #phase = byId("progress-phase", HTMLSpanElement);
  readonly #percent = byId("progress-percent", HTMLSpanElement);
  readonly #bar = byId("progress-bar", HTMLDivElement);
  readonly #fill = byId("progress-fill", HTMLSpanElement);
  readonly #detail = byId("progress-detail", HTMLDivElement);
  #samples: { t: number; bytes: number }[] = [];
  #currentPhase: WorkerLoadProgress["phase"] | undefined;
  /** A one-line summary for places with little room (the top bar on a phone). */
  onSummary: ((text: string) => void) | undefined;

  /** Shows the block for a new load. */
  start(label: string): void {
    this.#samples = [];
    this.#currentPhase = undefined;
    this.#root.hidden = false;
    this.#root.classList.remove("indeterminate");
    this.#phase.textContent = label;
    this.#percent.textContent = "";
    this.#detail.textContent = "";
    this.#setFraction(0);
    this.#root.dataset.phase = "start";
    this.#root.scrollIntoView({ block: "nearest" });
    this.onSummary?.(label);
  }

  update(p: WorkerLoadProgress): void {
    if (p.phase !== this.#currentPhase) {
      this.#currentPhase = p.phase;
      this.#samples = [];
    }
    // After the last tensor the runner still builds its kernels (tens of seconds on a
    // software GPU): say so rather than sit at 100%.
    const preparing = p.phase === "weights" && p.bytesLoaded >= p.bytesTotal;
    this.#root.dataset.phase = preparing ? "preparing" : p.phase;
    this.#root.classList.toggle("indeterminate", preparing);
    this.#phase.textContent = preparing ? "Preparing the model to run (compiling kernels)" : PHASE_LABELS[p.phase];
    const fraction = p.bytesTotal > 0 ? p.bytesLoaded / p.bytesTotal : 0;
    this.#setFraction(fraction);
    this.#percent.textContent = `${Math.floor(fraction * 100)}%`;
    const now = performance.now();
    this.#samples.push({ t: now, bytes: p.bytesLoaded });
    while (this.#samples.length > 2 && now - this.#samples[0]!.t > WINDOW_MS) this.#samples.shift();
    const first = this.#samples[0]!;
    const seconds = (now - first.t) / 1000;
    const rate = seconds > 0.2 ? (p.bytesLoaded - first.bytes) / seconds : 0;
    const parts = [`${formatBytes(p.bytesLoaded)} of ${formatBytes(p.bytesTotal)}`];
    const left = rate > 0 && p.bytesLoaded < p.bytesTotal ? `${formatDuration((p.bytesTotal - p.bytesLoaded) / rate)} left` : "";
    if (left) parts.push(formatRate(rate), left);
    if (p.phase === "weights" && p.tensorsTotal > 0) parts.push(`${p.tensorsLoaded}/${p.tensorsTotal} tensors`);
    this.#detail.textContent = parts.join(" · ");
    const short = preparing ? "Preparing…" : p.phase === "download" ? "Downloading" : "Loading";
    this.onSummary?.(preparing ? short : [`${short} ${Math.floor(fraction * 100)}%`, left].filter(Boolean).join(" · "));
  }

  hide(): void {
    this.#root.hidden = true;
  }

  #setFraction(f: number): void {
    const pct = Math.max(0, Math.min(100, f * 100));
    this.#fill.style.width = `${pct}%`;
    this.#bar.setAttribute("aria-valuenow", String(Math.floor(pct)));
  }
}
