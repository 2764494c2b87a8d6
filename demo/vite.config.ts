/**
 * The demo page: `npm run demo` (dev server), `npm run build:demo` (static site in dist/demo).
 *
 * The default model is served with the page, so it opens ready to chat with no download:
 * `DEMO_MODEL=path.gguf` if set, else the embedded `models/tiny-fortunes-q8_0.gguf`, else a
 * synthetic tiny llama (random weights, generated once into .cache/demo/). It is copied into
 * the build as `models/<name>`; the dev server serves it with HTTP range requests, and
 * switches to the embedded model by itself (full reload) when that file appears.
 */
import { createReadStream, existsSync, statSync } from "node:fs";
import { mkdir, rename } from "node:fs/promises";
import { readFile } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { basename, dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin, type ViteDevServer } from "vite";
import { writeSyntheticModel } from "../src/model/synthetic.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const EMBEDDED_MODEL = join(ROOT, "models", "tiny-fortunes-q8_0.gguf");
const SYNTHETIC_MODEL = join(ROOT, ".cache", "demo", "synthetic-tiny-llama-q8_0.gguf");
const VIRTUAL_ID = "virtual:default-model";
const RESOLVED_VIRTUAL_ID = "\0" + VIRTUAL_ID;

interface DefaultModel {
  /** Absolute path on this machine. */
  readonly file: string;
  /** Where the page fetches it, relative to the page. */
  readonly url: string;
  readonly bytes: number;
  /** Random weights: the page says so, as its text is noise. */
  readonly synthetic: boolean;
}

/** Picks the default model, generating the synthetic one when nothing else exists. */
async function resolveDefaultModel(): Promise<DefaultModel> {
  let file = process.env.DEMO_MODEL ? resolve(process.env.DEMO_MODEL) : EMBEDDED_MODEL;
  if (!existsSync(file)) {
    if (process.env.DEMO_MODEL) throw new Error(`DEMO_MODEL=${process.env.DEMO_MODEL}: no such file`);
    file = SYNTHETIC_MODEL;
    if (!existsSync(file)) {
      await mkdir(dirname(file), { recursive: true });
      const partial = `${file}.${process.pid}.partial`;
      await writeSyntheticModel(partial, { arch: "llama", preset: "tiny", quant: "Q8_0", seed: 1 });
      await rename(partial, file);
    }
  }
  return { file, url: `models/${basename(file)}`, bytes: statSync(file).size, synthetic: file === SYNTHETIC_MODEL };
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` → an inclusive range inside `size`, or null. */
function parseRange(header: string | undefined, size: number): [number, number] | null | "invalid" {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return "invalid";
  let start: number;
  let end: number;
  if (m[1] === "") {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? "invalid" : [start, end];
}

function serveFile(file: string, rangeHeader: string | undefined, res: ServerResponse): void {
  const size = statSync(file).size;
  const range = parseRange(rangeHeader, size);
  res.setHeader("Accept-Ranges", "bytes");
  res.setHeader("Content-Type", "application/octet-stream");
  if (range === "invalid") {
    res.statusCode = 416;
    res.setHeader("Content-Range", `bytes */${size}`);
    res.end();
    return;
  }
  const [start, end] = range ?? [0, size - 1];
  res.statusCode = range ? 206 : 200;
  if (range) res.setHeader("Content-Range", `bytes ${start}-${end}/${size}`);
  res.setHeader("Content-Length", String(end - start + 1));
  createReadStream(file, { start, end }).pipe(res);
}

function defaultModelPlugin(): Plugin {
  let model: Promise<DefaultModel> = resolveDefaultModel();

  /** In dev: when the embedded model appears, switch to it. */
  function watchEmbedded(server: ViteDevServer): void {
    server.watcher.add(dirname(EMBEDDED_MODEL));
    server.watcher.on("add", (path) => {
      if (resolve(path) !== EMBEDDED_MODEL || process.env.DEMO_MODEL) return;
      model = resolveDefaultModel();
      const mod = server.moduleGraph.getModuleById(RESOLVED_VIRTUAL_ID);
      if (mod) server.moduleGraph.invalidateModule(mod);
      server.ws.send({ type: "full-reload" });
    });
  }

  return {
    name: "webgpu-llm-default-model",
    resolveId(id) {
      return id === VIRTUAL_ID ? RESOLVED_VIRTUAL_ID : undefined;
    },
    async load(id) {
      if (id !== RESOLVED_VIRTUAL_ID) return undefined;
      const m = await model;
      const exported = { url: m.url, bytes: m.bytes, synthetic: m.synthetic, fileName: basename(m.file) };
      return `export default ${JSON.stringify(exported)};`;
    },
    configureServer(server) {
      watchEmbedded(server);
      server.middlewares.use(async (req, res, next) => {
        const m = await model;
        const path = (req.url ?? "").split("?")[0];
        if (path !== `/${m.url}`) return next();
        serveFile(m.file, req.headers.range, res);
      });
    },
    async generateBundle() {
      const m = await model;
      this.emitFile({ type: "asset", fileName: m.url, source: await readFile(m.file) });
    },
  };
}

// `node:*` modules appear only behind a local-file branch the browser never takes: leave
// them as imports rather than stubbing them. Class names are kept because errors report
// `new.target.name`.
const rolldownOptions = { external: [/^node:/], output: { keepNames: true } };

export default defineConfig({
  root: resolve(ROOT, "demo"),
  // Relative asset paths: the built site works from any folder (a CDN, GitHub Pages, file server).
  base: "./",
  plugins: [defaultModelPlugin()],
  build: {
    outDir: resolve(ROOT, "dist", "demo"),
    emptyOutDir: true,
    target: "es2022",
    // Vite minifies CSS with lightningcss, whose native binary is an optional dependency that
    // scripts/setup.sh leaves out (--omit=optional); the stylesheet is small either way.
    cssMinify: false,
    rolldownOptions,
  },
  worker: {
    format: "es",
    rolldownOptions,
  },
  server: { port: 5173 },
  preview: { port: 4173 },
});
