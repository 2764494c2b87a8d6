/**
 * The load progress block: phase, bar, bytes, speed and time left. Speed is measured over
 * the last few seconds (not since the start), so it follows the network as it changes.
 *
 * On WebGPU a load has a second step after the weights: compiling the kernels, which takes
 * most of a load on a software GPU (half a minute on SwiftShader). It has its own bar
 * (pipelines compiled out of those asked for), and the time left while the weights load
 * includes it, as long as this browser has compiled them once before (remembered in
 * localStorage); before that it says a compile step follows instead of a number that
 * would be wrong. On narrow screens, where the block sits in the closed drawer, a strip at
 * the top of the chat shows the same bar.
 */
import type { WorkerLoadProgress } from "./runtime.ts";
import { byId } from "./dom.ts";
import { formatBytes, formatDuration, formatRate } from "./format.ts";

const WINDOW_MS = 3000;
/** Seconds the last kernel compile took in this browser. */
const COMPILE_SECONDS_KEY = "webgpu-llm.demo.compileSeconds";

const PHASE_LABELS: Record<WorkerLoadProgress["phase"], string> = {
  download: "Downloading",
  open: "Reading the model header",
  weights: "Loading weights",
  compile: "Compiling kernels",
  ready: "Ready",
};

/** Where a load stands, as the estimate needs it. */
export interface EstimateInput {
  /** Seconds left in the byte phase (download or weights) at its measured rate, if known. */
  readonly byteSecondsLeft: number | undefined;
  /** A compile step follows the bytes (WebGPU). */
  readonly compileAhead: boolean;
  /** How long the last compile took in this browser, if it ever ran. */
  readonly rememberedCompileSeconds: number | undefined;
}

/**
 * Seconds left for the whole load while bytes still come in: the bytes at their rate, plus
 * the compile step that follows them. `undefined` when unknowable (no rate yet, or a
 * compile ahead that this browser has never timed).
 */
export function secondsLeftBeforeCompile(e: EstimateInput): number | undefined {
  if (e.byteSecondsLeft === undefined) return undefined;
  if (!e.compileAhead) return e.byteSecondsLeft;
  return e.rememberedCompileSeconds === undefined ? undefined : e.byteSecondsLeft + e.rememberedCompileSeconds;
}

/** Seconds left in the compile step, from the pace so far; `undefined` before the first pipeline is done. */
export function compileSecondsLeft(done: number, total: number, elapsedSeconds: number): number | undefined {
  if (done < 1 || elapsedSeconds <= 0) return undefined;
  return Math.max(0, total - done) * (elapsedSeconds / done);
}

function rememberedCompileSeconds(): number | undefined {
  try {
    const v = Number(localStorage.getItem(COMPILE_SECONDS_KEY));
    return Number.isFinite(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

function rememberCompileSeconds(seconds: number): void {
  try {
    localStorage.setItem(COMPILE_SECONDS_KEY, seconds.toFixed(1));
  } catch {
    // Not remembered: the next load says "then compiling kernels" instead of a number.
  }
}

export class ProgressView {
  readonly #root = byId("progress", HTMLDivElement);
  readonly #phase = byId("progress-phase", HTMLSpanElement);
  readonly #percent = byId("progress-percent", HTMLSpanElement);
  readonly #bar = byId("progress-bar", HTMLDivElement);
  readonly #fill = byId("progress-fill", HTMLSpanElement);
  readonly #detail = byId("progress-detail", HTMLDivElement);
  readonly #strip = byId("load-strip", HTMLDivElement);
  readonly #stripText = byId("load-strip-text", HTMLSpanElement);
  readonly #stripBar = byId("load-strip-bar", HTMLDivElement);
  readonly #stripFill = byId("load-strip-fill", HTMLSpanElement);
  #samples: { t: number; bytes: number }[] = [];
  #currentPhase: WorkerLoadProgress["phase"] | undefined;
  #compileAhead = false;
  #compileStartedAt: number | undefined;
  /** A one-line summary for places with little room (the top bar on a phone). */
  onSummary: ((text: string) => void) | undefined;

  /** Shows the block for a new load; `compiles`: the backend compiles kernels after the weights. */
  start(label: string, compiles: boolean): void {
    this.#samples = [];
    this.#currentPhase = undefined;
    this.#compileAhead = compiles;
    this.#compileStartedAt = undefined;
    this.#root.hidden = false;
    this.#strip.hidden = false;
    this.#setIndeterminate(false);
    this.#phase.textContent = label;
    this.#percent.textContent = "";
    this.#detail.textContent = "";
    this.#setFraction(0);
    this.#root.dataset.phase = "start";
    this.#root.scrollIntoView({ block: "nearest" });
    this.#summarize(label);
  }

  update(p: WorkerLoadProgress): void {
    if (p.phase !== this.#currentPhase) this.#enterPhase(p.phase);
    if (p.phase === "compile") this.#showCompile(p.pipelinesDone ?? 0, p.pipelinesTotal ?? 0);
    else this.#showBytes(p);
  }

  hide(): void {
    this.#root.hidden = true;
    this.#strip.hidden = true;
  }

  #enterPhase(phase: WorkerLoadProgress["phase"]): void {
    const now = performance.now();
    if (this.#currentPhase === "compile" && this.#compileStartedAt !== undefined) {
      rememberCompileSeconds((now - this.#compileStartedAt) / 1000);
    }
    if (phase === "compile") {
      this.#compileStartedAt = now;
      this.#compileAhead = false;
    }
    this.#currentPhase = phase;
    this.#samples = [];
  }

  #showCompile(done: number, total: number): void {
    this.#root.dataset.phase = "compile";
    this.#setIndeterminate(false);
    this.#phase.textContent = `${PHASE_LABELS.compile} (2 of 2)`;
    const fraction = total > 0 ? done / total : 0;
    this.#setFraction(fraction);
    this.#percent.textContent = `${Math.floor(fraction * 100)}%`;
    const elapsed = (performance.now() - (this.#compileStartedAt ?? performance.now())) / 1000;
    const seconds = compileSecondsLeft(done, total, elapsed);
    const left = seconds === undefined ? "" : `${formatDuration(seconds)} left`;
    this.#detail.textContent = [`${done}/${total} kernels`, left].filter(Boolean).join(" · ");
    this.#summarize([`Compiling ${done}/${total}`, left].filter(Boolean).join(" · "));
  }

  #showBytes(p: WorkerLoadProgress): void {
    // After the last tensor the runner may still set things up before its kernels compile:
    // say so rather than sit at 100%.
    const preparing = p.phase === "weights" && p.bytesLoaded >= p.bytesTotal;
    this.#root.dataset.phase = preparing ? "preparing" : p.phase;
    this.#setIndeterminate(preparing);
    const step = this.#compileAhead && p.phase !== "ready" ? " (1 of 2)" : "";
    this.#phase.textContent = preparing ? "Preparing the model to run" : PHASE_LABELS[p.phase] + step;
    const fraction = p.bytesTotal > 0 ? p.bytesLoaded / p.bytesTotal : 0;
    this.#setFraction(fraction);
    this.#percent.textContent = `${Math.floor(fraction * 100)}%`;
    const rate = this.#measureRate(p.bytesLoaded);
    const byteSecondsLeft = rate > 0 && p.bytesLoaded < p.bytesTotal ? (p.bytesTotal - p.bytesLoaded) / rate : undefined;
    const seconds = secondsLeftBeforeCompile({
      byteSecondsLeft,
      compileAhead: this.#compileAhead,
      rememberedCompileSeconds: rememberedCompileSeconds(),
    });
    const left = seconds !== undefined ? `${formatDuration(seconds)} left` : byteSecondsLeft !== undefined ? "then compiling kernels" : "";
    const parts = [`${formatBytes(p.bytesLoaded)} of ${formatBytes(p.bytesTotal)}`];
    if (byteSecondsLeft !== undefined) parts.push(formatRate(rate), left);
    if (p.phase === "weights" && p.tensorsTotal > 0) parts.push(`${p.tensorsLoaded}/${p.tensorsTotal} tensors`);
    this.#detail.textContent = parts.join(" · ");
    const short = preparing ? "Preparing…" : p.phase === "download" ? "Downloading" : "Loading";
    this.#summarize(preparing ? short : [`${short} ${Math.floor(fraction * 100)}%`, left].filter(Boolean).join(" · "));
  }

  /** Bytes per second over the last few seconds of this phase (0 until there is a span to measure). */
  #measureRate(bytesLoaded: number): number {
    const now = performance.now();
    this.#samples.push({ t: now, bytes: bytesLoaded });
    while (this.#samples.length > 2 && now - this.#samples[0]!.t > WINDOW_MS) this.#samples.shift();
    const first = this.#samples[0]!;
    const seconds = (now - first.t) / 1000;
    return seconds > 0.2 ? (bytesLoaded - first.bytes) / seconds : 0;
  }

  #summarize(text: string): void {
    this.#stripText.textContent = text;
    this.onSummary?.(text);
  }

  #setIndeterminate(on: boolean): void {
    this.#root.classList.toggle("indeterminate", on);
    this.#strip.classList.toggle("indeterminate", on);
  }

  #setFraction(f: number): void {
    const pct = Math.max(0, Math.min(100, f * 100));
    for (const fill of [this.#fill, this.#stripFill]) fill.style.width = `${pct}%`;
    for (const bar of [this.#bar, this.#stripBar]) bar.setAttribute("aria-valuenow", String(Math.floor(pct)));
  }
}
