/**
 * The generation settings panel: mode, system prompt, sampling, length and JSON mode. Values
 * live in the form and are saved in localStorage, so a reload keeps them.
 */
import type { GenerateOptions } from "./runtime.ts";
import { byId, h } from "./dom.ts";

export type Mode = "chat" | "complete";

export interface Settings {
  readonly mode: Mode;
  readonly systemPrompt: string;
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly repeatPenalty: number;
  readonly maxTokens: number;
  /** Empty means a fresh random seed each time. */
  readonly seed: number | undefined;
  /** Replies constrained to one JSON object (OpenAI's `response_format: json_object`). */
  readonly jsonMode: boolean;
}

/**
 * JSON mode's schema: any JSON object, as the server's `json_object` (JSON_OBJECT_SCHEMA in
 * src/grammar). Written here so that the page's bundle does not pull in the grammar engine,
 * which runs in the worker.
 */
const ANY_JSON_OBJECT = { type: "object" } as const;

/** Sampling defaults: llama.cpp's, with a light repetition penalty that suits small models. */
export const DEFAULT_SETTINGS: Settings = {
  mode: "chat",
  systemPrompt: "",
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1.1,
  maxTokens: 256,
  seed: undefined,
  jsonMode: false,
};

type SliderKey = "temperature" | "topK" | "topP" | "minP" | "repeatPenalty";

interface SliderSpec {
  readonly key: SliderKey;
  readonly label: string;
  readonly min: number;
  readonly max: number;
  readonly step: number;
  readonly hint: string;
}

const SLIDERS: readonly SliderSpec[] = [
  { key: "temperature", label: "Temperature", min: 0, max: 2, step: 0.05, hint: "0 always picks the likeliest token" },
  { key: "topK", label: "Top-k", min: 0, max: 200, step: 1, hint: "0 = off" },
  { key: "topP", label: "Top-p", min: 0.01, max: 1, step: 0.01, hint: "1 = off" },
  { key: "minP", label: "Min-p", min: 0, max: 0.5, step: 0.01, hint: "0 = off" },
  { key: "repeatPenalty", label: "Repeat penalty", min: 1, max: 2, step: 0.01, hint: "1 = off" },
];

const STORAGE_KEY = "webgpu-llm.demo.settings";

function load(): Settings {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    if (raw) {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed === "object" && parsed !== null) return { ...DEFAULT_SETTINGS, ...parsed };
    }
  } catch {
    // Storage may be off (private modes); the defaults will do.
  }
  return DEFAULT_SETTINGS;
}

function clamp(v: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, v));
}

/** The settings form, bound to the elements of index.html. */
export class SettingsPanel {
  readonly #system = byId("system-prompt", HTMLTextAreaElement);
  readonly #systemField = byId("system-field", HTMLLabelElement);
  readonly #maxTokens = byId("max-tokens", HTMLInputElement);
  readonly #seed = byId("seed", HTMLInputElement);
  readonly #jsonMode = byId("json-mode", HTMLInputElement);
  readonly #numbers = new Map<SliderKey, { range: HTMLInputElement; number: HTMLInputElement }>();
  #chatAvailable = true;
  /** Called when the mode changes (the transcript shows chat and completions differently). */
  onModeChange: ((mode: Mode) => void) | undefined;

  constructor() {
    const sliders = byId("sliders", HTMLDivElement);
    for (const spec of SLIDERS) sliders.append(this.#slider(spec));
    for (const radio of this.#modeRadios()) {
      radio.addEventListener("change", () => {
        this.#syncMode();
        this.#save();
        this.onModeChange?.(this.settings.mode);
      });
    }
    for (const el of [this.#system, this.#maxTokens, this.#seed, this.#jsonMode]) el.addEventListener("change", () => this.#save());
    byId("reset-settings", HTMLButtonElement).addEventListener("click", () => {
      this.#apply(DEFAULT_SETTINGS);
      this.#save();
      this.onModeChange?.(this.settings.mode);
    });
    this.#apply(load());
  }

  /** The current values, validated. */
  get settings(): Settings {
    const num = (key: SliderKey, fallback: number) => {
      const v = Number(this.#numbers.get(key)?.number.value);
      return Number.isFinite(v) ? v : fallback;
    };
    const spec = (key: SliderKey) => SLIDERS.find((s) => s.key === key)!;
    const bounded = (key: SliderKey) => clamp(num(key, DEFAULT_SETTINGS[key]), spec(key).min, spec(key).max);
    const maxTokens = Math.floor(Number(this.#maxTokens.value));
    const seedText = this.#seed.value.trim();
    const seed = seedText === "" ? undefined : Math.floor(Number(seedText));
    const mode = this.#modeRadios().find((r) => r.checked)?.value === "complete" ? "complete" : "chat";
    return {
      mode: this.#chatAvailable ? mode : "complete",
      systemPrompt: this.#system.value,
      temperature: bounded("temperature"),
      topK: Math.round(bounded("topK")),
      topP: bounded("topP"),
      minP: bounded("minP"),
      repeatPenalty: bounded("repeatPenalty"),
      maxTokens: Number.isInteger(maxTokens) && maxTokens > 0 ? maxTokens : DEFAULT_SETTINGS.maxTokens,
      seed: seed !== undefined && Number.isInteger(seed) && seed >= 0 ? seed : undefined,
      jsonMode: this.#jsonMode.checked,
    };
  }

  /** The request options of the current settings. */
  generateOptions(signal: AbortSignal): GenerateOptions {
    const s = this.settings;
    return {
      temperature: s.temperature,
      topK: s.topK,
      topP: s.topP,
      minP: s.minP,
      repeatPenalty: s.repeatPenalty,
      maxTokens: s.maxTokens,
      seed: s.seed,
      // The worker carries it to the engine, which compiles the grammar once and masks each token.
      ...(s.jsonMode ? { jsonSchema: ANY_JSON_OBJECT } : {}),
      signal,
    };
  }

  /** Models without a chat template can only complete text. */
  setChatAvailable(available: boolean): void {
    this.#chatAvailable = available;
    const chat = this.#modeRadios().find((r) => r.value === "chat");
    if (chat) {
      chat.disabled = !available;
      chat.parentElement?.setAttribute("title", available ? "" : "This model has no chat template");
    }
    this.#syncMode();
  }

  #modeRadios(): HTMLInputElement[] {
    return [...document.querySelectorAll<HTMLInputElement>('input[name="mode"]')];
  }

  #syncMode(): void {
    this.#systemField.hidden = this.settings.mode !== "chat";
  }

  #slider(spec: SliderSpec): HTMLElement {
    const id = `setting-${spec.key}`;
    const range = h("input", { type: "range", min: String(spec.min), max: String(spec.max), step: String(spec.step), "aria-label": spec.label });
    const number = h("input", { type: "number", id, min: String(spec.min), max: String(spec.max), step: String(spec.step) });
    range.addEventListener("input", () => {
      number.value = range.value;
    });
    range.addEventListener("change", () => this.#save());
    number.addEventListener("input", () => {
      range.value = number.value;
    });
    number.addEventListener("change", () => this.#save());
    this.#numbers.set(spec.key, { range, number });
    return h(
      "div",
      { class: "slider" },
      h("label", { for: id }, spec.label),
      number,
      range,
      h("span", { class: "hint" }, spec.hint),
    );
  }

  #apply(s: Settings): void {
    for (const r of this.#modeRadios()) r.checked = r.value === s.mode;
    this.#system.value = s.systemPrompt;
    for (const spec of SLIDERS) {
      const pair = this.#numbers.get(spec.key)!;
      pair.range.value = pair.number.value = String(s[spec.key]);
    }
    this.#maxTokens.value = String(s.maxTokens);
    this.#seed.value = s.seed === undefined ? "" : String(s.seed);
    this.#jsonMode.checked = s.jsonMode === true;
    this.#syncMode();
  }

  #save(): void {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(this.settings));
    } catch {
      // Not saved; nothing else depends on it.
    }
  }
}
