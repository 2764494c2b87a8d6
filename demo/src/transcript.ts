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

/** One reply being streamed into the transcript. */
export class ReplyView {
  readonly element: HTMLElement;
  readonly #text: HTMLElement;
  readonly #meta: HTMLElement;
  readonly #started = performance.now();
  #firstAt: number | undefined;
  #tokens = 0;
  #chunks = 0;
  #content = "";

  constructor(element: HTMLElement, text: HTMLElement, meta: HTMLElement) {
    this.element = element;
    this.#text = text;
    this.#meta = meta;
    this.#setStatus("waiting");
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
    const parts = ["Stopped"];
    const ttft = this.pageTtftMs;
    if (ttft !== undefined) {
      parts.push(`TTFT ${formatMs(ttft)}`);
      if (this.#tokens > 1) parts.push(`${this.liveRate.toFixed(1)} tok/s`);
      parts.push(tokenCount(this.#tokens));
    }
    this.#meta.textContent = parts.join(" · ");
    this.#setStatus("stopped");
  }

  failed(title: string): void {
    this.#meta.textContent = title;
    this.#setStatus("error");
  }

  #setStatus(status: ReplyStatus): void {
    this.element.dataset.status = status;
    // Screen readers announce the reply once, when it is complete, not token by token.
    this.element.setAttribute("aria-busy", String(status === "waiting" || status === "streaming"));
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

  /** A reply; in completion mode the prompt is shown in front of the continuation. */
  addReply(prompt?: string): ReplyView {
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
    this.#root.append(el);
    this.#scroll();
    const view = new ReplyView(el, text, meta);
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

  clear(): void {
    this.#messages = [];
  }
}
