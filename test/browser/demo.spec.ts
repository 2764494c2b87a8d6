/**
 * The demo page in Chromium (WebGPU on SwiftShader), driven as a person would: it opens on
 * the embedded model, streams a greedy reply that must equal the engine's CPU output for
 * the same chat, stops mid-answer, loads a GGUF by URL from another origin with range
 * requests (progress shown, then cached in OPFS), loads it again after a reload without a
 * single request, unloads (the worker ends), clears the cache, and fits a phone screen.
 *
 * The tests share one page and run in order. The model loaded by URL, and the reloads, use
 * the CPU backend: SwiftShader spends about half a minute compiling kernels per WebGPU load,
 * and what those steps check (download, cache, progress, unload) does not depend on it.
 */
import { readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, expect, type Locator, type Page, test } from "@playwright/test";
import type { ChatMessage, GenerateInput, GenerateOptions } from "../../src/engine/types.ts";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { cpuGeneration } from "./support/expected.ts";
import { startServer, type TestServer } from "./support/server.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SITE = join(ROOT, "dist", "demo");
const EMBEDDED_NAME = readdirSync(join(SITE, "models")).find((f) => f.endsWith(".gguf"));
if (!EMBEDDED_NAME) throw new Error("dist/demo/models holds no .gguf: run `npm run build:demo` first");
const EMBEDDED = join(SITE, "models", EMBEDDED_NAME);
const REMOTE_PATH = "/models/remote.gguf";
/** The same file under another name, for the cancelled download. */
const REMOTE_PATH_2 = "/models/remote-2.gguf";
/** Slow enough that the download shows its progress for a few seconds. */
const REMOTE_BYTES_PER_SECOND = 500_000;
const LOAD_TIMEOUT = 180_000;

test.describe.configure({ mode: "serial" });

let site: TestServer;
let remote: TestServer;
let remoteModel: string;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

test.beforeAll(async ({ browser }) => {
  remoteModel = await syntheticModelPath("llama", "Q8_0");
  site = await startServer({ root: SITE });
  remote = await startServer({
    files: { [REMOTE_PATH]: remoteModel, [REMOTE_PATH_2]: remoteModel },
    throttleBytesPerSecond: REMOTE_BYTES_PER_SECOND,
  });
  // Clipboard access, so the Copy button's text can be read back.
  context = await browser.newContext({ permissions: ["clipboard-read", "clipboard-write"] });
  page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
});

test.afterAll(async () => {
  await context?.close();
  await site?.close();
  await remote?.close();
});

test.afterEach(() => {
  expect(pageErrors, "uncaught errors on the page").toEqual([]);
});

async function shot(p: Page, name: string): Promise<void> {
  await p.screenshot({ path: test.info().outputPath(`${name}.png`) });
}

async function engineState(p: Page, state: string, timeout = LOAD_TIMEOUT): Promise<void> {
  await expect(p.locator("body")).toHaveAttribute("data-engine", state, { timeout });
}

/** Types into a settings field and commits it (its `change` fires on blur). */
async function setField(p: Page, selector: string, value: string): Promise<void> {
  const field = p.locator(selector);
  await field.fill(value);
  await field.blur();
}

function lastReply(p: Page): Locator {
  return p.locator(".turn.assistant").last();
}

/** The page's request for a prompt: chat messages when the model has a template, else text. */
async function pageInput(p: Page, prompt: string): Promise<GenerateInput> {
  const chat = await p.locator('input[name="mode"][value="chat"]').isChecked();
  const messages: ChatMessage[] = [{ role: "user", content: prompt }];
  return chat ? messages : prompt;
}

/** The page's default sampling settings, with greedy decoding and no repetition penalty. */
function greedy(maxTokens: number): GenerateOptions {
  return { temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, maxTokens };
}

test("opens on the embedded model, ready to chat on WebGPU, and shows the adapter", async () => {
  await page.goto(`${site.origin}/`);
  await engineState(page, "ready");
  await expect(page.getByTestId("model-origin")).toHaveText("Served with this page");
  await expect(page.locator(".model-origin .badge")).toHaveText("WebGPU");
  await expect(page.locator("#model-chip-text")).toContainText("WebGPU");
  await expect(page.getByTestId("adapter-name")).toContainText(/swiftshader/i);
  // SwiftShader: subgroups yes, shader-f16 no (see shared/recipes.md).
  await expect(page.locator(".feature.on", { hasText: "subgroups" })).toHaveCount(1);
  await expect(page.locator(".feature.off", { hasText: "shader-f16" })).toHaveCount(1);
  await expect(page.locator(".limits dt")).toHaveCount(5);
  await expect(page.locator(".running strong")).toContainText("webgpu");
  // The model card shows the context and the KV pool the engine chose: enough pages of the
  // pool for at least one full context.
  const tags = await page.locator("#model-card .tag").allTextContents();
  const ctx = Number(/^(\d+) ctx$/.exec(tags.find((t) => t.endsWith(" ctx")) ?? "")?.[1]);
  const pool = /^KV [\d.]+ (B|KiB|MiB|GiB) · (\d+) pages of (\d+)$/.exec(tags.find((t) => t.startsWith("KV ")) ?? "");
  expect(ctx, tags.join(" | ")).toBe(256);
  expect(pool, tags.join(" | ")).not.toBeNull();
  expect(Number(pool![2]) * Number(pool![3])).toBeGreaterThanOrEqual(ctx);
  // The model came with the page, read in parts: never one whole-file download.
  const modelRequests = site.log.filter((e) => e.path === `/models/${EMBEDDED_NAME}`);
  expect(modelRequests.length).toBeGreaterThan(0);
  for (const r of modelRequests) expect([r.range !== undefined, r.status]).toEqual([true, 206]);
  // And no range twice: the header read for the model card is replayed to the engine.
  const ranges = modelRequests.map((r) => r.range);
  expect(new Set(ranges).size).toBe(ranges.length);
  await shot(page, "01-ready");
  await page.locator("section", { has: page.locator("#device-heading") }).screenshot({ path: test.info().outputPath("01-device-panel.png") });
});

test("a greedy reply streams exactly the engine's output for the same chat", async () => {
  const prompt = "Tell me a fortune.";
  await setField(page, "#setting-temperature", "0");
  await setField(page, "#setting-repeatPenalty", "1");
  await setField(page, "#max-tokens", "8");
  const expected = await cpuGeneration(EMBEDDED, await pageInput(page, prompt), greedy(8));

  await page.locator("#prompt").fill(prompt);
  await page.locator("#prompt").press("Enter");
  await engineState(page, "generating", 10_000);
  const reply = lastReply(page);
  await expect(reply).toHaveAttribute("data-status", "done", { timeout: 120_000 });
  expect(await reply.getByTestId("reply-text").textContent()).toBe(expected.text);
  // Streamed: one chunk per token, then the one that carries the finish reason.
  expect(Number(await reply.getAttribute("data-chunks"))).toBe(expected.tokens.length + 1);
  await expect(reply.locator(".meta")).toContainText(/TTFT .* tok\/s · \d+ tokens/);
  await expect(page.locator('.turn.user .bubble').last()).toHaveText(prompt);
  await engineState(page, "ready");
  await shot(page, "02-greedy-reply");
});

/** The regenerate button of the latest answer. */
function regenerateButton(p: Page): Locator {
  return lastReply(p).getByRole("button", { name: "Regenerate answer" });
}

test("Copy puts the answer on the clipboard; Regenerate replaces the answer to the same question", async () => {
  const prompt = "Tell me a fortune.";
  const reply = lastReply(page);
  const shown = (await reply.getByTestId("reply-text").textContent()) ?? "";
  expect(shown.length).toBeGreaterThan(0);
  await reply.getByRole("button", { name: "Copy answer" }).click();
  await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe(shown);

  // Fewer tokens this time, so the new answer is told apart from the old one. It must be
  // the answer to the question alone: the old exchange left the history first.
  await setField(page, "#max-tokens", "4");
  const expected = await cpuGeneration(EMBEDDED, await pageInput(page, prompt), greedy(4));
  await regenerateButton(page).click();
  await expect(lastReply(page)).toHaveAttribute("data-status", "done", { timeout: 120_000 });
  expect(await lastReply(page).getByTestId("reply-text").textContent()).toBe(expected.text);
  await expect(page.locator(".turn.assistant")).toHaveCount(1);
  await expect(page.locator(".turn.user")).toHaveCount(1);
  await expect(regenerateButton(page)).toBeEnabled();
  await shot(page, "02b-regenerated");
});

test("Stop before the first token says so, and Regenerate then answers", async () => {
  await expect(page.locator('input[name="mode"][value="chat"]')).toBeChecked();
  const first = { role: "user", content: "Tell me a fortune." } as const;
  const firstAnswer = (await lastReply(page).getByTestId("reply-text").textContent()) ?? "";
  const prompt = "Give me one piece of advice.";
  await page.locator("#prompt").fill(prompt);
  // Send and Stop in one task of the page: no token can arrive in between, whatever the
  // speed of the machine (two key presses from Playwright would race the first token).
  await page.evaluate(() => {
    document.querySelector("#prompt")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
    document.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true, cancelable: true }));
  });
  const reply = lastReply(page);
  await expect(reply).toHaveAttribute("data-status", "stopped");
  await expect(reply.getByTestId("reply-text")).toHaveText("");
  await expect(reply.locator(".empty-note")).toHaveText("(stopped before any output)");
  await expect(reply.locator(".meta")).toHaveText("Stopped before the first token");
  await expect(reply.getByRole("button", { name: "Copy answer" })).toBeHidden();
  await engineState(page, "ready", 10_000);
  await expect(regenerateButton(page)).toBeEnabled();
  await shot(page, "02c-stopped-before-output");

  // The question is asked again after the earlier exchange, and answered in its place.
  const expected = await cpuGeneration(
    EMBEDDED,
    [first, { role: "assistant", content: firstAnswer }, { role: "user", content: prompt }],
    greedy(4),
  );
  await regenerateButton(page).click();
  await expect(lastReply(page)).toHaveAttribute("data-status", "done", { timeout: 120_000 });
  expect(await lastReply(page).getByTestId("reply-text").textContent()).toBe(expected.text);
  await expect(page.locator(".turn.assistant")).toHaveCount(2);
  await expect(page.locator(".empty-note")).toHaveCount(0);
});

/** Prompts for the Stop test: the first whose greedy answer is long enough is used. */
const LONG_ANSWER_PROMPTS = [
  "What is the meaning of life?",
  "Tell me a long story about a dragon and a king.",
  "Write a poem about the sea.",
  "Explain how a computer works, step by step.",
];

test("Stop (Esc) aborts the reply mid-answer and the page is ready again", async () => {
  await page.locator("#new-chat").click();
  await setField(page, "#max-tokens", "200");
  // Stopping mid-answer needs an answer long enough to be caught while it streams; the
  // embedded model may end some answers early, so take the first prompt that runs long.
  let prompt = "";
  let full: Awaited<ReturnType<typeof cpuGeneration>> | undefined;
  for (const candidate of LONG_ANSWER_PROMPTS) {
    const answer = await cpuGeneration(EMBEDDED, await pageInput(page, candidate), greedy(200));
    if (answer.tokens.length >= 24) {
      prompt = candidate;
      full = answer;
      break;
    }
  }
  if (!full) throw new Error(`no prompt of ${JSON.stringify(LONG_ANSWER_PROMPTS)} gets a greedy answer of 24 tokens or more`);

  await page.locator("#prompt").fill(prompt);
  await page.locator("#prompt").press("Enter");
  const reply = lastReply(page);
  // Checked every animation frame, so Esc follows the first text by a frame or two.
  await page.waitForFunction(
    () => (document.querySelector(".turn.assistant:last-child [data-testid=reply-text]")?.textContent ?? "") !== "",
    null,
    { polling: "raf", timeout: 120_000 },
  );
  await expect(page.locator("#send")).toHaveAttribute("aria-label", "Stop");
  await page.keyboard.press("Escape");
  await expect(reply).toHaveAttribute("data-status", "stopped", { timeout: 10_000 });
  const partial = (await reply.getByTestId("reply-text").textContent()) ?? "";
  expect(partial.length).toBeGreaterThan(0);
  expect(partial.length).toBeLessThan(full.text.length);
  expect(full.text.startsWith(partial), `"${partial}" is not a prefix of the full answer`).toBe(true);
  await expect(reply.locator(".meta")).toContainText("Stopped");
  await engineState(page, "ready", 10_000);
  await expect(page.locator("#send")).toHaveAttribute("aria-label", "Send");
  await shot(page, "03-stopped");
});

test("JSON mode: with the toggle on, the reply is the engine's JSON-constrained answer and parses as an object", async () => {
  await page.locator("#new-chat").click();
  await page.locator("#json-mode").check();
  await setField(page, "#setting-temperature", "0");
  await setField(page, "#setting-repeatPenalty", "1");
  await setField(page, "#max-tokens", "64");
  const prompt = "Describe a cat.";
  // Independently: the CPU engine in this process with the json_object schema; without the
  // toggle reaching the worker's engine, the model answers in prose instead.
  const expected = await cpuGeneration(EMBEDDED, await pageInput(page, prompt), { ...greedy(64), jsonSchema: { type: "object" } });
  await page.locator("#prompt").fill(prompt);
  await page.locator("#prompt").press("Enter");
  const reply = lastReply(page);
  await expect(reply).toHaveAttribute("data-status", "done", { timeout: 120_000 });
  const text = (await reply.getByTestId("reply-text").textContent()) ?? "";
  expect(text).toBe(expected.text);
  const value: unknown = JSON.parse(text);
  expect(typeof value === "object" && value !== null && !Array.isArray(value), text).toBe(true);
  await page.locator("#json-mode").uncheck();
  await engineState(page, "ready", 10_000);
});

test("a GGUF from a URL downloads with range requests, shows its progress, and is cached", async () => {
  await page.locator("#backend").selectOption("cpu");
  await engineState(page, "ready");
  await expect(page.locator(".model-origin .badge")).toHaveText("CPU");

  const url = `${remote.origin}${REMOTE_PATH}`;
  await page.locator("#model-url").fill(url);
  await page.locator("#load-url").click();
  const progress = page.locator("#progress");
  await expect(progress).toHaveAttribute("data-phase", "download");
  // Bytes, speed and time left, once a few samples are in.
  await expect(page.locator("#progress-detail")).toHaveText(/^[\d.]+ (KiB|MiB) of 1\.\d+ MiB · [\d.]+ (KiB|MiB)\/s · \d+ s left$/);
  await shot(page, "04-downloading");
  await engineState(page, "ready");
  await expect(page.getByTestId("model-origin")).toHaveAttribute("data-cache", "stored");
  await expect(page.getByTestId("model-name")).toHaveText("synthetic-tiny-llama");

  const size = statSync(remoteModel).size;
  const gets = remote.log.filter((e) => e.method === "GET");
  expect(gets.length).toBeGreaterThan(1);
  for (const r of gets) expect([r.path, r.range !== undefined, r.status]).toEqual([REMOTE_PATH, true, 206]);
  expect(remote.bytesServed(REMOTE_PATH)).toBeGreaterThanOrEqual(size);
  await expect(page.locator(".cache-item")).toHaveCount(1);
  await expect(page.locator(".cache-item .cache-name")).toHaveText("remote.gguf");

  // It answers, too (on the CPU, a few tokens).
  await setField(page, "#setting-temperature", "0");
  await setField(page, "#setting-repeatPenalty", "1");
  await setField(page, "#max-tokens", "6");
  await page.locator("#prompt").fill("Hello");
  await page.locator("#prompt").press("Enter");
  await expect(lastReply(page)).toHaveAttribute("data-status", "done", { timeout: 60_000 });

  // Complete mode continues plain text, shown after the prompt; greedy, it is the engine's own continuation.
  await page.locator(".segmented label", { hasText: "Complete" }).click();
  const prompt = "Once upon a time";
  const continuation = await cpuGeneration(remoteModel, prompt, greedy(6));
  await page.locator("#prompt").fill(prompt);
  await page.locator("#prompt").press("Enter");
  const completion = lastReply(page);
  await expect(completion).toHaveAttribute("data-status", "done", { timeout: 60_000 });
  await expect(completion.locator(".prompt-echo")).toHaveText(prompt);
  expect(await completion.getByTestId("reply-text").textContent()).toBe(continuation.text);
  await shot(page, "05-url-model");
  await page.locator(".segmented label", { hasText: "Chat" }).click();
});

test("after a reload, the cached model loads without a single request", async () => {
  await page.reload();
  await engineState(page, "ready");
  const before = remote.log.length;
  await page.getByRole("button", { name: "Load remote.gguf" }).click();
  await engineState(page, "loading", 10_000);
  await engineState(page, "ready");
  await expect(page.getByTestId("model-origin")).toHaveAttribute("data-cache", "hit");
  await expect(page.getByTestId("model-origin")).toHaveText("From this browser's cache");
  expect(remote.log.slice(before)).toEqual([]);
  await shot(page, "06-from-cache");
});

test("Unload disposes the engine and ends its worker", async () => {
  const workers = page.workers();
  expect(workers).toHaveLength(1);
  const closed = new Promise<void>((resolveClosed) => workers[0]!.once("close", () => resolveClosed()));
  await page.locator("#unload").click();
  await engineState(page, "unloaded", 30_000);
  await closed;
  expect(page.workers()).toHaveLength(0);
  await expect(page.locator(".notice", { hasText: "Model unloaded" })).toBeVisible();
  await expect(page.locator("#send")).toBeDisabled();
  await expect(page.locator("#load-default")).toBeVisible();
  await shot(page, "07-unloaded");
});

test("Clear cache empties the model cache", async () => {
  await page.locator("#clear-cache").click();
  await expect(page.locator(".cache-item")).toHaveCount(0);
  await expect(page.locator(".cache-list .empty")).toBeVisible();
  await expect(page.locator(".notice", { hasText: "Cache cleared" })).toBeVisible();
});

test("a missing model gets a plain-language message", async () => {
  await page.locator("#model-url").fill(`${remote.origin}/models/missing.gguf`);
  await page.locator("#load-url").click();
  await engineState(page, "failed");
  await expect(page.locator(".notice.error")).toContainText("There is no model at that address (HTTP 404).");
  await shot(page, "08-missing-model");
});

test("Cancel during a download stops it and leaves nothing in the cache", async () => {
  await page.locator("#model-url").fill(`${remote.origin}${REMOTE_PATH_2}`);
  await page.locator("#load-url").click();
  await expect(page.locator("#progress")).toHaveAttribute("data-phase", "download");
  await page.locator("#cancel-load").click();
  await engineState(page, "unloaded", 10_000);
  await expect(page.locator(".notice", { hasText: "Loading cancelled." })).toBeVisible();
  const sent = remote.bytesServed(REMOTE_PATH_2);
  expect(sent).toBeLessThan(statSync(remoteModel).size);
  await expect(page.locator(".cache-list .empty")).toBeVisible();
  await expect(page.locator(".cache-item")).toHaveCount(0);
  // No partial file either: the write was discarded, not committed.
  const files = await page.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle("webgpu-llm-models");
    const names: string[] = [];
    for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(name);
    return names;
  });
  expect(files.filter((f) => f !== "index.json")).toEqual([]);
});

/** Starts recording what the progress block says, each time it changes: `[phase, detail]`. */
async function recordProgress(p: Page): Promise<void> {
  await p.evaluate(() => {
    const block = document.querySelector<HTMLElement>("#progress")!;
    const detail = document.querySelector("#progress-detail")!;
    const log: [string, string][] = [];
    Object.assign(window, { progressLog: log });
    new MutationObserver(() => log.push([block.dataset.phase ?? "", detail.textContent ?? ""])).observe(block, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
      attributeFilter: ["data-phase"],
    });
  });
}

test("on a phone, in dark mode: the load shows its bar and kernels compiled, then chat, and settings in a drawer", async () => {
  await page.emulateMedia({ colorScheme: "dark" });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator("#open-drawer").click();
  await expect(page.locator("#drawer")).toBeInViewport();
  // WebGPU, so that the load has its compile step (about half a minute on SwiftShader).
  await page.locator("#backend").selectOption("webgpu");
  await recordProgress(page);
  await page.locator("#load-default").click();
  await expect(page.locator("#drawer")).not.toBeInViewport();
  // The drawer is closed: the strip above the chat shows the bar.
  await expect(page.locator("#load-strip .bar")).toBeInViewport();
  await expect(page.locator("#progress")).toHaveAttribute("data-phase", "compile", { timeout: LOAD_TIMEOUT });
  await expect(page.locator("#load-strip-text")).toHaveText(/^Compiling \d+\/\d+/);
  await expect(page.locator("#load-strip .bar")).toBeInViewport();
  await shot(page, "09a-phone-compiling");
  await engineState(page, "ready");
  await expect(page.locator("#load-strip")).toBeHidden();
  const log: [string, string][] = await page.evaluate(() => (window as unknown as { progressLog: [string, string][] }).progressLog);
  const compiled = log.filter(([phase]) => phase === "compile").map(([, detail]) => {
    const m = /^(\d+)\/(\d+) kernels/.exec(detail);
    if (!m) throw new Error(`compile progress without a count: "${detail}"`);
    return [Number(m[1]), Number(m[2])] as const;
  });
  expect(compiled.length).toBeGreaterThan(1);
  for (const [i, [done, total]] of compiled.entries()) {
    expect(done).toBeLessThanOrEqual(total);
    if (i > 0) expect([done >= compiled[i - 1]![0], total >= compiled[i - 1]![1]]).toEqual([true, true]);
  }
  const [lastDone, lastTotal] = compiled.at(-1)!;
  expect(lastTotal).toBeGreaterThan(0);
  expect(lastDone).toBe(lastTotal);
  await page.locator("#prompt").fill("Give me one piece of advice.");
  await page.locator("#prompt").press("Enter");
  await expect(lastReply(page)).toHaveAttribute("data-status", "done", { timeout: 60_000 });
  await shot(page, "09-phone-dark");
  await page.locator("#open-drawer").click();
  await expect(page.locator("#drawer")).toBeInViewport();
  await shot(page, "10-phone-drawer");
  await page.keyboard.press("Escape");
  await expect(page.locator("#drawer")).not.toBeInViewport();
  await page.setViewportSize({ width: 1280, height: 800 });
  await shot(page, "11-desktop-dark");
});

test("without WebGPU the page explains it and runs on the CPU", async ({ browser }) => {
  const plain = await browser.newContext();
  try {
    const p = await plain.newPage();
    const errors: string[] = [];
    p.on("pageerror", (e) => errors.push(e.message));
    // As in a browser without WebGPU: the page sees no navigator.gpu.
    await p.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
    await p.goto(`${site.origin}/`);
    await engineState(p, "ready");
    await expect(p.locator(".notice.warn")).toContainText("WebGPU is not available");
    await expect(p.locator("#adapter .callout")).toContainText("does not offer WebGPU");
    await expect(p.locator(".model-origin .badge")).toHaveText("CPU");
    await shot(p, "12-no-webgpu");
    expect(errors).toEqual([]);
  } finally {
    await plain.close();
  }
});

test("served by a static server without range support, the page loads its model and answers", async ({ browser }) => {
  const plainSite = await startServer({ root: SITE, ignoreRange: true });
  const plain = await browser.newContext();
  try {
    const p = await plain.newPage();
    const errors: string[] = [];
    p.on("pageerror", (e) => errors.push(e.message));
    // The CPU backend: what is checked here is how the bytes arrive, not the kernels.
    await p.addInitScript(() => localStorage.setItem("webgpu-llm.demo.backend", "cpu"));
    await p.goto(`${plainSite.origin}/`);
    await engineState(p, "ready");
    await expect(p.getByTestId("model-origin")).toHaveText("Served with this page");
    // The server sent the whole file for the one range request made; nothing else was asked.
    const modelRequests = plainSite.log.filter((e) => e.path === `/models/${EMBEDDED_NAME}`);
    expect(modelRequests.map((r) => [r.range !== undefined, r.status, r.bytes])).toEqual([[true, 200, statSync(EMBEDDED).size]]);

    const prompt = "Tell me a fortune.";
    await setField(p, "#setting-temperature", "0");
    await setField(p, "#setting-repeatPenalty", "1");
    await setField(p, "#max-tokens", "6");
    const expected = await cpuGeneration(EMBEDDED, await pageInput(p, prompt), greedy(6));
    await p.locator("#prompt").fill(prompt);
    await p.locator("#prompt").press("Enter");
    await expect(lastReply(p)).toHaveAttribute("data-status", "done", { timeout: 60_000 });
    expect(await lastReply(p).getByTestId("reply-text").textContent()).toBe(expected.text);
    await shot(p, "13-no-range-server");
    expect(errors).toEqual([]);
  } finally {
    await plain.close();
    await plainSite.close();
  }
});
