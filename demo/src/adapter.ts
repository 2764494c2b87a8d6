/**
 * What WebGPU this browser offers: the adapter, the features the kernels use, and the
 * limits that decide which models fit. Probed on the page (the worker requests its own
 * device); shown in the Device panel.
 */
import { h } from "./dom.ts";
import { formatBytes } from "./format.ts";

/** The limits shown, with how to print each. */
const KEY_LIMITS: readonly { name: keyof GPUSupportedLimits; label: string; bytes: boolean }[] = [
  { name: "maxBufferSize", label: "Largest buffer", bytes: true },
  { name: "maxStorageBufferBindingSize", label: "Largest storage binding", bytes: true },
  { name: "maxComputeWorkgroupStorageSize", label: "Workgroup memory", bytes: true },
  { name: "maxComputeInvocationsPerWorkgroup", label: "Invocations per workgroup", bytes: false },
  { name: "maxStorageBuffersPerShaderStage", label: "Storage buffers per stage", bytes: false },
];

export interface AdapterReport {
  /** Why there is no adapter, in words for people; undefined when there is one. */
  readonly missing?: string;
  readonly name?: string;
  readonly fallback?: boolean;
  readonly features: { readonly f16: boolean; readonly subgroups: boolean; readonly timestampQuery: boolean };
  readonly limits: readonly { readonly label: string; readonly value: string; readonly raw: number }[];
  readonly subgroupSizes?: string;
}

const NO_FEATURES = { f16: false, subgroups: false, timestampQuery: false } as const;

/** Asks the browser for an adapter and reads what it offers. */
export async function probeAdapter(): Promise<AdapterReport> {
  if (!window.isSecureContext) {
    return { missing: "WebGPU needs a secure page (https:// or localhost).", features: NO_FEATURES, limits: [] };
  }
  const gpu = navigator.gpu;
  if (!gpu) {
    return {
      missing: "This browser does not offer WebGPU. Chrome and Edge 113+, Safari 26 and Firefox 141+ do (on Linux, Chrome needs it enabled).",
      features: NO_FEATURES,
      limits: [],
    };
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { missing: `The browser refused a WebGPU adapter: ${e instanceof Error ? e.message : String(e)}`, features: NO_FEATURES, limits: [] };
  }
  if (!adapter) {
    return {
      missing: "WebGPU is here, but no GPU adapter is available (it may be blocked for this GPU or driver).",
      features: NO_FEATURES,
      limits: [],
    };
  }
  const info = adapter.info;
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((p) => p && p.trim() !== "");
  const limits = KEY_LIMITS.map(({ name, label, bytes }) => {
    const raw = Number(adapter.limits[name]);
    return { label, raw, value: bytes ? formatBytes(raw) : raw.toLocaleString("en-US") };
  });
  const sizes = info.subgroupMinSize !== undefined && info.subgroupMaxSize !== undefined
    ? `${info.subgroupMinSize}–${info.subgroupMaxSize}`
    : undefined;
  return {
    name: parts.length > 0 ? [...new Set(parts)].join(" · ") : "Unnamed adapter",
    fallback: info.isFallbackAdapter,
    features: {
      f16: adapter.features.has("shader-f16"),
      subgroups: adapter.features.has("subgroups"),
      timestampQuery: adapter.features.has("timestamp-query"),
    },
    limits,
    subgroupSizes: sizes,
  };
}

function feature(label: string, on: boolean, detail: string): HTMLElement {
  return h("li", { class: on ? "feature on" : "feature off", title: detail }, h("span", { class: "tick", "aria-hidden": "true" }, on ? "✓" : "–"), label, h("span", { class: "visually-hidden" }, on ? " supported" : " not supported"));
}

/** Fills the Device panel. */
export function renderAdapter(el: HTMLElement, report: AdapterReport, running: string | undefined): void {
  el.replaceChildren();
  if (report.missing) {
    el.append(h("p", { class: "callout warn" }, report.missing, " Models run on the CPU instead: it works, slowly."));
  } else {
    el.append(
      h("div", { class: "adapter-name", "data-testid": "adapter-name" }, report.name ?? "", report.fallback ? h("span", { class: "badge" }, "software") : null),
      h(
        "ul",
        { class: "features", "aria-label": "Features" },
        feature("shader-f16", report.features.f16, "16-bit floats in shaders: halves the memory traffic of F16 weights and caches"),
        feature("subgroups", report.features.subgroups, `Subgroup operations${report.subgroupSizes ? ` (sizes ${report.subgroupSizes})` : ""}: faster reductions`),
        feature("timestamp-query", report.features.timestampQuery, "GPU timers for profiling"),
      ),
      h(
        "dl",
        { class: "limits" },
        ...report.limits.flatMap((l) => [h("dt", {}, l.label), h("dd", {}, l.value)]),
      ),
    );
  }
  if (running) el.append(h("p", { class: "hint running" }, "Running on: ", h("strong", {}, running)));
}
