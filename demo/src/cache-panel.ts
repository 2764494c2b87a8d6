/**
 * The "Cached models" list: models downloaded from URLs and kept in this browser (OPFS),
 * each loadable without a download or removable, plus "Clear cache".
 */
import { type CachedModel, ModelCache } from "./runtime.ts";
import { byId, h } from "./dom.ts";
import { formatBytes, shortName } from "./format.ts";

export class CachePanel {
  readonly #root = byId("cache", HTMLDivElement);
  readonly #list = byId("cache-list", HTMLUListElement);
  readonly #usage = byId("cache-usage", HTMLParagraphElement);
  readonly #clear = byId("clear-cache", HTMLButtonElement);
  readonly #cache: Promise<ModelCache | undefined> = ModelCache.open();
  /** Loads a cached model (by its URL: the worker finds it in the cache). */
  onLoad: ((url: string) => void) | undefined;
  /** Tells the page what happened, in words. */
  onNotice: ((text: string) => void) | undefined;

  constructor() {
    this.#clear.addEventListener("click", () => void this.#clearAll());
  }

  async refresh(): Promise<void> {
    const cache = await this.#cache;
    if (!cache) {
      this.#root.dataset.available = "false";
      this.#list.replaceChildren();
      this.#usage.textContent = "This browser offers no private storage here (a private window?), so models are not cached.";
      this.#clear.hidden = true;
      return;
    }
    const models = await cache.list();
    this.#root.dataset.count = String(models.length);
    this.#clear.hidden = models.length === 0;
    this.#list.replaceChildren(...models.map((m) => this.#row(m)));
    if (models.length === 0) {
      this.#list.append(h("li", { class: "empty" }, "Nothing yet. Models loaded from a URL are kept here."));
    }
    const total = models.reduce((sum, m) => sum + m.size, 0);
    const estimate = await navigator.storage?.estimate?.().catch(() => undefined);
    const quota = estimate?.quota ? ` · ${formatBytes(estimate.quota)} available to this site` : "";
    this.#usage.textContent = models.length > 0 ? `${formatBytes(total)} in ${models.length} model${models.length > 1 ? "s" : ""}${quota}` : "";
  }

  #row(m: CachedModel): HTMLElement {
    const load = h("button", { type: "button", class: "link-button", "aria-label": `Load ${shortName(m.url)}` }, "Load");
    load.addEventListener("click", () => this.onLoad?.(m.url));
    const remove = h("button", { type: "button", class: "icon-button small", "aria-label": `Remove ${shortName(m.url)} from the cache`, title: "Remove" }, "✕");
    remove.addEventListener("click", () => void this.#remove(m.url));
    return h(
      "li",
      { class: "cache-item", title: m.url },
      h("span", { class: "cache-name" }, shortName(m.url)),
      h("span", { class: "cache-size" }, formatBytes(m.size)),
      load,
      remove,
    );
  }

  async #remove(url: string): Promise<void> {
    await (await this.#cache)?.delete(url);
    await this.refresh();
  }

  async #clearAll(): Promise<void> {
    const cache = await this.#cache;
    if (!cache) return;
    const freed = await cache.clear();
    this.onNotice?.(`Cache cleared: ${formatBytes(freed)} freed.`);
    await this.refresh();
  }
}
