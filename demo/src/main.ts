/**
 * The demo page: chat with a GGUF model that runs in a Web Worker on WebGPU.
 *
 * The page opens on the model served with it (no download), and can load any GGUF from a
 * URL (downloaded once, then cached in OPFS), from a file picker, or by drag-and-drop.
 * `document.body.dataset.engine` says where the page is (`loading`, `ready`, `generating`,
 * `unloaded`, `failed`) for people styling it and for the browser tests.
 */
import defaultModel from "virtual:default-model";
import { type GenerateInput, type KvPool, RequestAbortedError, type WorkerLoadProgress } from "./runtime.ts";
import { type AdapterReport, probeAdapter, renderAdapter } from "./adapter.ts";
import { CachePanel } from "./cache-panel.ts";
import { byId, h } from "./dom.ts";
import { formatBytes, formatCount, formatMs, shortName } from "./format.ts";
import { describeError } from "./messages.ts";
import { ProgressView } from "./progress.ts";
import { type BackendPreference, EngineSession, type LoadedModel, type ModelChoice } from "./session.ts";
import { SettingsPanel } from "./settings.ts";
import { History, type ReplyView, Transcript } from "./transcript.ts";

type PageState = "loading" | "ready" | "generating" | "unloaded" | "failed";

const DEFAULT_CHOICE: ModelChoice = { kind: "default", url: new URL(defaultModel.url, document.baseURI).href };
const SUGGESTIONS = ["Tell me a fortune.", "What is the meaning of life?", "Give me one piece of advice."];
const BACKEND_KEY = "webgpu-llm.demo.backend";

const session = new EngineSession();
const settings = new SettingsPanel();
const progress = new ProgressView();
const cachePanel = new CachePanel();
const transcript = new Transcript(byId("transcript", HTMLDivElement));
const history = new History();

const ui = {
  chipText: byId("model-chip-text", HTMLSpanElement),
  modelCard: byId("model-card", HTMLDivElement),
  notices: byId("notices", HTMLDivElement),
  composer: byId("composer", HTMLFormElement),
  prompt: byId("prompt", HTMLTextAreaElement),
  send: byId("send", HTMLButtonElement),
  liveStats: byId("live-stats", HTMLSpanElement),
  unload: byId("unload", HTMLButtonElement),
  loadDefault: byId("load-default", HTMLButtonElement),
  cancelLoad: byId("cancel-load", HTMLButtonElement),
  cancelLoadStrip: byId("load-strip-cancel", HTMLButtonElement),
  urlForm: byId("url-form", HTMLFormElement),
  urlInput: byId("model-url", HTMLInputElement),
  fileInput: byId("model-file", HTMLInputElement),
  backend: byId("backend", HTMLSelectElement),
  adapter: byId("adapter", HTMLDivElement),
  drawer: byId("drawer", HTMLElement),
  openDrawer: byId("open-drawer", HTMLButtonElement),
  closeDrawer: byId("close-drawer", HTMLButtonElement),
  scrim: byId("scrim", HTMLDivElement),
  dropOverlay: byId("drop-overlay", HTMLDivElement),
  newChat: byId("new-chat", HTMLButtonElement),
};

let state: PageState = "loading";
let adapterReport: AdapterReport | undefined;
/** The request being generated: Stop and Esc abort it; `done` settles once `runTurn` has finished with it. */
let current: { controller: AbortController; reply: ReplyView; done: Promise<void> } | undefined;

/** One prompt and its answer on screen: what regenerate re-runs. */
interface Turn {
  readonly text: string;
  readonly mode: "chat" | "complete";
  readonly reply: ReplyView;
  /** The exchange went into the chat history (done or stopped; not failed). */
  readonly inHistory: boolean;
}
/** The latest settled turn: the only one whose answer can be regenerated. */
let lastTurn: Turn | undefined;
let liveTimer: number | undefined;

function setState(next: PageState): void {
  state = next;
  document.body.dataset.engine = next;
  const generating = next === "generating";
  ui.send.classList.toggle("stop", generating);
  ui.send.setAttribute("aria-label", generating ? "Stop" : "Send");
  ui.send.disabled = !(next === "ready" || generating);
  ui.prompt.placeholder = next === "ready" || generating ? "Message the model…" : next === "loading" ? "Loading the model…" : "Load a model to start";
  ui.unload.hidden = !(next === "ready" || generating);
  ui.loadDefault.hidden = next !== "unloaded" && next !== "failed";
  if (lastTurn) lastTurn.reply.regenerateEnabled = next === "ready";
}

// ---------------------------------------------------------------------------------------
// Notices

/**
 * Shows a notice. Those with a `scope` are replaced by the next notice of that scope, and
 * cleared when the thing they were about succeeds (a load error, once a model loads).
 */
function notify(
  kind: "info" | "warn" | "error",
  title: string,
  detail?: string,
  action?: { label: string; run: () => void },
  scope?: "load",
): void {
  if (scope) clearNotices(scope);
  const close = h("button", { type: "button", class: "icon-button small", "aria-label": "Dismiss" }, "✕");
  const actionButton = action ? h("button", { type: "button", class: "secondary-button small" }, action.label) : null;
  const notice = h(
    "div",
    { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status", "data-scope": scope },
    h("div", { class: "notice-body" }, h("strong", {}, title), detail ? h("details", {}, h("summary", {}, "Details"), h("code", {}, detail)) : null),
    actionButton,
    close,
  );
  close.addEventListener("click", () => notice.remove());
  actionButton?.addEventListener("click", () => {
    notice.remove();
    action?.run();
  });
  ui.notices.append(notice);
  // Information fades on its own; warnings and errors stay until dismissed.
  if (kind === "info") window.setTimeout(() => notice.remove(), 8000);
  while (ui.notices.children.length > 3) ui.notices.firstElementChild?.remove();
}

function clearNotices(scope: "load"): void {
  for (const n of ui.notices.querySelectorAll(`.notice[data-scope="${scope}"]`)) n.remove();
}

// ---------------------------------------------------------------------------------------
// Model card and welcome

function originText(m: LoadedModel): string {
  if (m.choice.kind === "default") return "Served with this page";
  if (m.choice.kind === "file") return "Local file";
  switch (m.info.origin.cache) {
    case "hit":
      return "From this browser's cache";
    case "stored":
      return "Downloaded · now cached";
    default:
      return "Streamed from the URL";
  }
}

/** The KV pool as one tag: its memory and pages, e.g. "KV 64 MiB · 256 pages of 32". */
function kvPoolTag(pool: KvPool): string {
  return `KV ${formatBytes(pool.bytes)} · ${pool.pageCount} pages of ${pool.pageSize}`;
}

function renderModelCard(m: LoadedModel | undefined, loading?: string): void {
  if (!m) {
    ui.modelCard.replaceChildren(h("p", { class: "muted" }, loading !== undefined ? `Loading ${loading}…` : "No model loaded."));
    return;
  }
  const d = m.info.model;
  const tags = [d.architecture, `${formatCount(d.parameterCount)} params`, formatBytes(d.fileSize), d.weightTypes.slice(0, 2).join("+"), `${m.info.limits.contextLength} ctx`, kvPoolTag(m.info.kvPool)];
  const synthetic = m.choice.kind === "default" && defaultModel.synthetic;
  ui.modelCard.replaceChildren(
    h("div", { class: "model-name", "data-testid": "model-name" }, d.name),
    h("div", { class: "tags" }, ...tags.map((t) => h("span", { class: "tag" }, t))),
    h(
      "div",
      { class: "model-origin" },
      h("span", { class: `badge ${m.backend}` }, m.backend === "webgpu" ? "WebGPU" : "CPU"),
      h("span", { "data-testid": "model-origin", "data-cache": m.info.origin.cache }, originText(m)),
    ),
  );
  if (synthetic) {
    ui.modelCard.append(
      h("p", { class: "callout" }, "This build embeds a synthetic model with random weights, so its replies are noise. Load any GGUF to chat for real."),
    );
  }
}

function showWelcome(m: LoadedModel | undefined): void {
  if (!m) {
    transcript.showWelcome(
      state === "failed" ? "No model could be loaded" : "No model loaded",
      ["Load the default model, a GGUF file from your computer, or one from a URL."],
      [],
      () => {},
    );
    return;
  }
  const d = m.info.model;
  const where = m.backend === "webgpu" ? "on your GPU through WebGPU" : "on your CPU";
  const chat = settings.settings.mode === "chat";
  transcript.showWelcome(
    chat ? `Chat with ${d.name}` : `Write with ${d.name}`,
    [
      `It runs entirely in this browser, ${where}. Nothing you type leaves your device.`,
      chat ? "" : "Complete mode: type the start of a text, and the model continues it.",
    ].filter((line) => line !== ""),
    chat ? SUGGESTIONS : ["Once upon a time", "The meaning of life is", "A wise man once said"],
    (s) => {
      ui.prompt.value = s;
      void send();
    },
  );
}

function renderChip(m: LoadedModel | undefined): void {
  if (state === "loading") ui.chipText.textContent = "Loading model…";
  else if (!m) ui.chipText.textContent = state === "failed" ? "No model (load failed)" : "No model loaded";
  else ui.chipText.textContent = `${m.info.model.name} · ${m.backend === "webgpu" ? "WebGPU" : "CPU"}`;
}

function renderDevice(): void {
  if (!adapterReport) return;
  renderAdapter(ui.adapter, adapterReport, session.loaded?.engine.description);
}

// ---------------------------------------------------------------------------------------
// Loading and unloading

function choiceLabel(choice: ModelChoice): string {
  if (choice.kind === "file") return choice.file.name;
  if (choice.kind === "default") return defaultModel.fileName;
  return shortName(choice.url);
}

async function loadModel(choice: ModelChoice): Promise<void> {
  await stopGenerating();
  setState("loading");
  renderChip(undefined);
  const label = choiceLabel(choice);
  renderModelCard(undefined, label);
  if (transcript.empty) {
    transcript.showWelcome(`Getting ${label} ready`, ["The model is loading into this tab, where it runs: nothing you type will leave your device."], [], () => {});
  }
  const preference = backendPreference();
  progress.start(`Opening ${label}`, preference !== "cpu" && typeof navigator.gpu !== "undefined");
  try {
    const loaded = await session.load(choice, preference, (p: WorkerLoadProgress) => progress.update(p));
    clearNotices("load");
    if (loaded.fallbackReason !== undefined) {
      const why = describeError(loaded.fallbackReason);
      notify("warn", `Running on the CPU: ${why.title}`, why.detail, undefined, "load");
    }
    settings.setChatAvailable(loaded.info.model.chatTemplate);
    setState("ready");
    if (!transcript.empty) transcript.addDivider(`Now talking to ${loaded.info.model.name} (${loaded.backend === "webgpu" ? "WebGPU" : "CPU"})`);
    else showWelcome(loaded);
    renderModelCard(loaded);
    renderChip(loaded);
    renderDevice();
    // A cached model should survive the browser's storage clean-ups; ask once it holds one.
    if (loaded.info.origin.cache === "stored") void navigator.storage?.persist?.().catch(() => false);
    ui.prompt.focus();
  } catch (error) {
    if (isCancelled(error)) {
      setState("unloaded");
      notify("info", "Loading cancelled.", undefined, undefined, "load");
    } else {
      setState("failed");
      const why = describeError(error);
      const retryOnCpu = preference !== "cpu" && session.loaded === undefined && /GPU/.test(why.title)
        ? { label: "Run on the CPU", run: () => { ui.backend.value = "cpu"; void loadModel(choice); } }
        : undefined;
      notify("error", why.title, why.detail, retryOnCpu, "load");
    }
    renderModelCard(undefined);
    renderChip(undefined);
    if (transcript.empty) showWelcome(undefined);
  } finally {
    progress.hide();
    void cachePanel.refresh();
  }
}

function backendPreference(): BackendPreference {
  const v = ui.backend.value;
  return v === "webgpu" || v === "cpu" ? v : "auto";
}

function isCancelled(error: unknown): boolean {
  return error instanceof Error && error.name === "EngineDisposedError";
}

async function unload(): Promise<void> {
  await stopGenerating();
  ui.unload.disabled = true;
  try {
    await session.unload();
  } finally {
    ui.unload.disabled = false;
  }
  setState("unloaded");
  renderModelCard(undefined);
  renderChip(undefined);
  renderDevice();
  notify("info", "Model unloaded: its worker has stopped and its GPU memory is released.");
  if (transcript.empty) showWelcome(undefined);
}

// ---------------------------------------------------------------------------------------
// Generating

/** Sends what is in the composer as a new turn. */
async function send(): Promise<void> {
  const text = ui.prompt.value;
  if (state !== "ready" || !session.loaded || text.trim() === "") return;
  const mode = settings.settings.mode;
  if (mode === "chat") transcript.addUser(text);
  const reply = transcript.addReply(mode === "chat" ? undefined : text);
  ui.prompt.value = "";
  autosize();
  await runTurn(text, mode, reply);
}

/** Asks again for the latest answer: its exchange leaves the history, and the new answer takes its place. */
async function regenerate(turn: Turn): Promise<void> {
  if (state !== "ready" || !session.loaded || turn !== lastTurn) return;
  if (turn.inHistory) history.removeLast();
  const reply = transcript.addReply(turn.mode === "chat" ? undefined : turn.text, turn.reply);
  await runTurn(turn.text, turn.mode, reply);
}

/** Generates the answer to `text` into `reply`, streaming; Stop and Esc abort it. */
async function runTurn(text: string, mode: Turn["mode"], reply: ReplyView): Promise<void> {
  const loaded = session.loaded;
  if (!loaded) return;
  if (lastTurn) lastTurn.reply.regenerable = false;
  lastTurn = undefined;
  const controller = new AbortController();
  const input: GenerateInput = mode === "chat" ? history.request(settings.settings.systemPrompt, text) : text;
  let markDone!: () => void;
  current = { controller, reply, done: new Promise((resolve) => (markDone = resolve)) };
  setState("generating");
  startLiveStats(reply);
  let answer: string | undefined;
  const stream = loaded.engine.generate(input, settings.generateOptions(controller.signal));
  try {
    for await (const chunk of stream) reply.append(chunk.text, chunk.tokens.length);
    const result = await stream.result;
    reply.finish(result);
    ui.liveStats.textContent = `Last reply: TTFT ${formatMs(result.timings.timeToFirstTokenMs)} · ${result.timings.decodeTokensPerSecond.toFixed(1)} tok/s`;
    answer = result.text;
  } catch (error) {
    if (error instanceof RequestAbortedError) {
      reply.stopped();
      ui.liveStats.textContent = reply.content === "" ? "Stopped before any output." : "Stopped.";
      answer = reply.content;
    } else {
      const why = describeError(error);
      reply.failed(why.title);
      ui.liveStats.textContent = "";
      notify("error", why.title, why.detail);
    }
  } finally {
    stopLiveStats();
    current = undefined;
    markDone();
    // "New chat" during the answer removed it: it belongs to no conversation any more.
    if (reply.element.isConnected) keepTurn({ text, mode, reply, inHistory: mode === "chat" && answer !== undefined }, answer);
    if (session.loaded === loaded && loaded.engine.state === "ready") setState("ready");
    else if (session.loaded === loaded) setState("failed");
    if (state === "ready" && !isNarrow()) ui.prompt.focus();
  }
}

/** Records a settled turn in the history and makes it the one regenerate re-runs. */
function keepTurn(turn: Turn, answer: string | undefined): void {
  if (turn.inHistory && answer !== undefined) history.add(turn.text, answer);
  lastTurn = turn;
  turn.reply.onRegenerate = () => void regenerate(turn);
  turn.reply.regenerable = true;
}

/** Aborts the request in progress (through its signal) and waits for it to wind down. */
async function stopGenerating(): Promise<void> {
  if (!current) return;
  const { controller, done } = current;
  controller.abort();
  await done;
}

function startLiveStats(reply: ReplyView): void {
  ui.liveStats.textContent = "Thinking…";
  stopLiveStats();
  liveTimer = window.setInterval(() => {
    const ttft = reply.pageTtftMs;
    if (ttft === undefined) return;
    ui.liveStats.textContent = `${reply.liveRate.toFixed(1)} tok/s · TTFT ${formatMs(ttft)}`;
  }, 250);
}

function stopLiveStats(): void {
  if (liveTimer !== undefined) window.clearInterval(liveTimer);
  liveTimer = undefined;
}

function newChat(): void {
  if (current) current.controller.abort();
  lastTurn = undefined;
  history.clear();
  transcript.clear();
  showWelcome(session.loaded);
  ui.liveStats.textContent = "";
  ui.prompt.focus();
}

// ---------------------------------------------------------------------------------------
// Layout: the drawer on narrow screens, the composer's height, drag-and-drop

function isNarrow(): boolean {
  return window.matchMedia("(max-width: 899px)").matches;
}

function setDrawer(open: boolean): void {
  document.body.classList.toggle("drawer-open", open);
  ui.openDrawer.setAttribute("aria-expanded", String(open));
  ui.scrim.hidden = !open;
  if (open) ui.closeDrawer.focus();
}

function autosize(): void {
  ui.prompt.style.height = "auto";
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 220)}px`;
}

function setUpDragAndDrop(): void {
  let depth = 0;
  const hasFiles = (e: DragEvent) => e.dataTransfer?.types.includes("Files") ?? false;
  window.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    depth++;
    ui.dropOverlay.hidden = false;
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) ui.dropOverlay.hidden = true;
  });
  window.addEventListener("dragover", (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    ui.dropOverlay.hidden = true;
    const file = e.dataTransfer?.files[0];
    if (!file) return;
    if (!/\.gguf$/i.test(file.name)) notify("warn", `${file.name} does not end in .gguf; trying it anyway.`);
    setDrawer(false);
    void loadModel({ kind: "file", file });
  });
}

// ---------------------------------------------------------------------------------------
// Wiring

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  if (state === "generating") void stopGenerating();
  else void send();
});
ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    void send();
  }
});
ui.prompt.addEventListener("input", autosize);
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  if (state === "generating") {
    e.preventDefault();
    void stopGenerating();
  } else if (document.body.classList.contains("drawer-open")) {
    setDrawer(false);
  }
});
ui.unload.addEventListener("click", () => void unload());
ui.loadDefault.addEventListener("click", () => {
  setDrawer(false);
  void loadModel(DEFAULT_CHOICE);
});
ui.cancelLoad.addEventListener("click", () => void session.cancel());
ui.cancelLoadStrip.addEventListener("click", () => void session.cancel());
ui.urlForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const url = ui.urlInput.value.trim();
  if (!url) return;
  setDrawer(false);
  void loadModel({ kind: "url", url });
});
ui.fileInput.addEventListener("change", () => {
  const file = ui.fileInput.files?.[0];
  ui.fileInput.value = "";
  if (!file) return;
  setDrawer(false);
  void loadModel({ kind: "file", file });
});
ui.backend.addEventListener("change", () => {
  try {
    localStorage.setItem(BACKEND_KEY, ui.backend.value);
  } catch {
    // Not remembered; fine.
  }
  const loaded = session.loaded;
  if (loaded) void loadModel(loaded.choice);
});
ui.openDrawer.addEventListener("click", () => setDrawer(true));
ui.closeDrawer.addEventListener("click", () => setDrawer(false));
ui.scrim.addEventListener("click", () => setDrawer(false));
ui.newChat.addEventListener("click", newChat);
settings.onModeChange = () => {
  if (transcript.empty) showWelcome(session.loaded);
};
cachePanel.onLoad = (url) => {
  ui.urlInput.value = url;
  setDrawer(false);
  void loadModel({ kind: "url", url });
};
cachePanel.onNotice = (text) => notify("info", text);
progress.onSummary = (text) => {
  if (state === "loading") ui.chipText.textContent = text;
};
setUpDragAndDrop();

try {
  const saved = localStorage.getItem(BACKEND_KEY);
  if (saved === "auto" || saved === "webgpu" || saved === "cpu") ui.backend.value = saved;
} catch {
  // Default backend then.
}

setState("loading");
void probeAdapter().then((report) => {
  adapterReport = report;
  renderDevice();
  if (report.missing) notify("warn", "WebGPU is not available, so models run on the CPU (slowly).", report.missing);
});
void cachePanel.refresh();
void loadModel(DEFAULT_CHOICE);
