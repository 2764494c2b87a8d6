/**
 * The conversation on screen: user turns, streamed replies with their timings, and the
 * welcome card of an empty chat. Replies are plain text (`white-space: pre-wrap`), shown
 * exactly as the model produced them.
 */
import type { ChatMessage, GenerationResult } from "./runtime.ts";
import { h } from "./dom.ts";
import { formatMs } from "./format.ts";

function tokenCount(n: number): string {
  return n === 1 ? "1 token" : `${n} tokens`;
}

export type ReplyStatus = "waiting" | "streaming" | "done" | "stopped" | "error";

/** How long the copy button says "Copied" before it reads "Copy answer" again. */
const COPIED_FEEDBACK_MS = 1500;

const SVG_NS = "http://www.w3.org/2000/svg";

/** A stroked 24×24 icon from path data, drawn here so it needs no asset. */
function strokeIcon(...paths: string[]): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  for (const d of paths) {
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

const COPY_ICON = ["M9 9h10v10H9z", "M5 15V5h10"];
const COPIED_ICON = ["M5 12.5 10 17.5 19 7"];
const REGENERATE_ICON = ["M19 12a7 7 0 1 1-2.05-4.95", "M19 4.5V9h-4.5"];

function actionButton(label: string, className: string, icon: string[]): HTMLButtonElement {
  const button = h("button", { type: "button", class: `icon-button small ${className}`, "aria-label": label, title: label });
  button.append(strokeIcon(...icon));
  return button;
}

/** One reply being streamed into the transcript, with its copy and regenerate buttons once it has settled. */
export class ReplyView {
  readonly element: HTMLElement;
  readonly #text: HTMLElement;
  readonly #meta: HTMLElement;
  readonly #prompt: string | undefined;
  readonly #copy = actionButton("Copy answer", "copy-reply", COPY_ICON);
  readonly #regenerate = actionButton("Regenerate answer", "regenerate-reply", REGENERATE_ICON);
  readonly #started = performance.now();
  #firstAt: number | undefined;
  #tokens = 0;
  #chunks = 0;
  #content = "";
  #copiedTimer: number | undefined;
  /** Runs when the regenerate button is pressed. */
  onRegenerate: (() => void) | undefined;

  constructor(element: HTMLElement, text: HTMLElement, meta: HTMLElement, prompt: string | undefined) {
    this.element = element;
    this.#text = text;
    this.#meta = meta;
    this.#prompt = prompt;
    this.#regenerate.hidden = true;
    this.#copy.addEventListener("click", () => void this.#copyToClipboard());
    this.#regenerate.addEventListener("click", () => this.onRegenerate?.());
    element.append(h("div", { class: "reply-actions" }, this.#copy, this.#regenerate));
    this.#setStatus("waiting");
  }

  /** Whether the regenerate button is offered: only on the latest answer, whose turn can be re-run. */
  set regenerable(on: boolean) {
    this.#regenerate.hidden = !on;
  }

  /** The regenerate button can be pressed (the engine is ready for a request). */
  set regenerateEnabled(on: boolean) {
    this.#regenerate.disabled = !on;
  }

  /** What Copy puts on the clipboard: the answer, after its prompt in completion mode. */
  get copyText(): string {
    return (this.#prompt ?? "") + this.#content;
  }

  /** Everything streamed so far. */
  get content(): string {
    return this.#content;
  }

  /** Tokens per second since the first token, as the reply streams. */
  get liveRate(): number {
    if (this.#firstAt === undefined || this.#tokens < 2) return 0;
    const seconds = (performance.now() - this.#firstAt) / 1000;
    return seconds > 0 ? (this.#tokens - 1) / seconds : 0;
  }

  /** Time to first token as the page saw it (includes the hop to the worker). */
  get pageTtftMs(): number | undefined {
    return this.#firstAt === undefined ? undefined : this.#firstAt - this.#started;
  }

  append(text: string, tokens: number): void {
    if (tokens > 0 && this.#firstAt === undefined) this.#firstAt = performance.now();
    this.#tokens += tokens;
    this.#chunks++;
    this.element.dataset.chunks = String(this.#chunks);
    if (text !== "") {
      this.#content += text;
      this.#text.append(text);
    }
    this.#setStatus("streaming");
  }

  finish(result: GenerationResult): void {
    const t = result.timings;
    const n = result.usage.completionTokens;
    const parts = [`TTFT ${formatMs(t.timeToFirstTokenMs)}`];
    // A rate needs two tokens at least: the first one's time is the TTFT.
    if (n > 1) parts.push(`${t.decodeTokensPerSecond.toFixed(1)} tok/s`);
    parts.push(tokenCount(n));
    if (result.finishReason === "length") parts.push("length limit");
    this.#meta.textContent = parts.join(" · ");
    this.#setStatus("done");
  }

  stopped(): void {
    const ttft = this.pageTtftMs;
    if (ttft === undefined) {
      // A bare "Stopped" under nothing reads like a broken page: say what happened.
      this.#text.after(h("span", { class: "empty-note" }, "(stopped before any output)"));
      this.#meta.textContent = "Stopped before the first token";
    } else {
      const parts = ["Stopped", `TTFT ${formatMs(ttft)}`];
      if (this.#tokens > 1) parts.push(`${this.liveRate.toFixed(1)} tok/s`);
      parts.push(tokenCount(this.#tokens));
      this.#meta.textContent = parts.join(" · ");
    }
    this.#setStatus("stopped");
  }

  failed(title: string): void {
    this.#meta.textContent = title;
    this.#setStatus("error");
  }

  #setStatus(status: ReplyStatus): void {
    this.element.dataset.status = status;
    const busy = status === "waiting" || status === "streaming";
    // Screen readers announce the reply once, when it is complete, not token by token.
    this.element.setAttribute("aria-busy", String(busy));
    // Nothing to copy until the answer has settled with some text.
    this.#copy.hidden = busy || this.#content === "";
  }

  async #copyToClipboard(): Promise<void> {
    let label = "Copied";
    try {
      await navigator.clipboard.writeText(this.copyText);
    } catch {
      // Refused (no permission, or the page is not focused): say so on the button itself.
      label = "Copy failed";
    }
    this.#showCopyFeedback(label);
  }

  #showCopyFeedback(label: string): void {
    this.#copy.setAttribute("aria-label", label);
    this.#copy.title = label;
    this.#copy.classList.toggle("copied", label === "Copied");
    this.#copy.replaceChildren(strokeIcon(...(label === "Copied" ? COPIED_ICON : COPY_ICON)));
    window.clearTimeout(this.#copiedTimer);
    this.#copiedTimer = window.setTimeout(() => {
      this.#copy.setAttribute("aria-label", "Copy answer");
      this.#copy.title = "Copy answer";
      this.#copy.classList.remove("copied");
      this.#copy.replaceChildren(strokeIcon(...COPY_ICON));
    }, COPIED_FEEDBACK_MS);
  }
}

/** The gradient tile with the brand's stroke, drawn here so it needs no asset. */
function welcomeMark(): Element {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 32 32");
  svg.setAttribute("class", "welcome-mark");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M9.5 21 13.2 10.5 16 17.6 18.8 10.5 22.5 21");
  svg.append(path);
  return svg;
}

export class Transcript {
  readonly #root: HTMLElement;

  constructor(root: HTMLElement) {
    this.#root = root;
  }

  clear(): void {
    this.#root.replaceChildren();
  }

  get empty(): boolean {
    return this.#root.querySelector(".turn") === null;
  }

  /** The welcome card: what is loaded, and prompts to start from. */
  showWelcome(title: string, lines: readonly (string | Node)[], suggestions: readonly string[], pick: (s: string) => void): void {
    const chips = suggestions.map((s) => {
      const b = h("button", { type: "button", class: "chip" }, s);
      b.addEventListener("click", () => pick(s));
      return b;
    });
    this.#root.replaceChildren(
      h(
        "div",
        { class: "welcome" },
        welcomeMark(),
        h("h1", {}, title),
        ...lines.map((l) => h("p", {}, l)),
        chips.length > 0 ? h("div", { class: "chips" }, ...chips) : null,
      ),
    );
  }

  addUser(text: string): void {
    this.#dropWelcome();
    this.#root.append(h("div", { class: "turn user", "data-role": "user" }, h("div", { class: "bubble" }, text)));
    this.#scroll();
  }

  /**
   * A reply; in completion mode the prompt is shown in front of the continuation. With
   * `replacing`, the new reply takes that reply's place (regenerate) instead of being appended.
   */
  addReply(prompt?: string, replacing?: ReplyView): ReplyView {
    this.#dropWelcome();
    const text = h("span", { class: "text", "data-testid": "reply-text" });
    const meta = h("div", { class: "meta" });
    const body = h(
      "div",
      { class: "reply-body" },
      prompt !== undefined ? h("span", { class: "prompt-echo" }, prompt) : null,
      text,
    );
    const el = h("div", { class: prompt !== undefined ? "turn assistant completion" : "turn assistant", "data-role": "assistant" }, body, meta);
    if (replacing?.element.isConnected) replacing.element.replaceWith(el);
    else this.#root.append(el);
    this.#scroll();
    const view = new ReplyView(el, text, meta, prompt);
    const observer = new MutationObserver(() => this.#scroll());
    observer.observe(text, { childList: true, characterData: true, subtree: true });
    return view;
  }

  /** Notes that the model changed, between turns of one conversation. */
  addDivider(text: string): void {
    if (this.empty) return;
    // Two model changes in a row: only the latest one matters.
    const last = this.#root.lastElementChild;
    if (last?.classList.contains("divider")) last.remove();
    this.#root.append(h("div", { class: "divider", role: "separator" }, h("span", {}, text)));
    this.#scroll();
  }

  #dropWelcome(): void {
    this.#root.querySelector(".welcome")?.remove();
  }

  /** Follows the stream, unless the reader scrolled up to read. */
  #scroll(): void {
    const el = this.#root;
    const nearBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 120;
    if (nearBottom) el.scrollTop = el.scrollHeight;
  }
}

/** The chat history sent with each request. */
export class History {
  #messages: ChatMessage[] = [];

  get messages(): readonly ChatMessage[] {
    return this.#messages;
  }

  /** The request's messages: the system prompt (if any), the history, the new user turn. */
  request(system: string, user: string): ChatMessage[] {
    const head: ChatMessage[] = system.trim() === "" ? [] : [{ role: "system", content: system }];
    return [...head, ...this.#messages, { role: "user", content: user }];
  }

  add(user: string, assistant: string): void {
    this.#messages.push({ role: "user", content: user }, { role: "assistant", content: assistant });
  }

  /** Forgets the last exchange (its answer is being regenerated). */
  removeLast(): void {
    this.#messages.splice(-2, 2);
  }

  clear(): void {
    this.#messages = [];
  }
}
