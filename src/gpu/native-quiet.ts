/**
 * Keeps native GPU libraries from writing noise on the process's stderr while we look for
 * an adapter, where the runtime allows it.
 *
 * Two sources of noise on a Linux machine without a desktop session (a server, a container,
 * a CI runner), seen on the README's first command:
 * - `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` (twice per Vulkan
 *   instance: Dawn's and Deno's) comes from libwayland-client, which the Vulkan drivers'
 *   window-system layer loads. It prints that when the variable is unset or not an absolute
 *   path; {@link ensureRuntimeDir} gives the process a private one before any GPU library
 *   reads it (the Vulkan loader reads it when an instance is made: Dawn's at its first
 *   adapter request, Deno's at the first `navigator.gpu.requestAdapter()`).
 * - Dawn's `Warning: Vulkan shaderUniform*ArrayDynamicIndexing required. … PhysicalDeviceVk.cpp`
 *   when it refuses an adapter (Mesa's lavapipe). `auto` probes Dawn first, so every run on
 *   lavapipe printed it even though it then ran on Deno's WebGPU. Dawn has no flag that
 *   silences it, so {@link captureNativeStderr} points file descriptor 2 at a temporary file
 *   while Dawn enumerates adapters (synchronously, inside `requestAdapter()`), and hands the
 *   text back: the caller puts it into its NO_ADAPTER error instead of letting it leak.
 *
 * Both are no-ops in a browser; the capture needs Deno on Linux with FFI allowed (`-A` or
 * `--allow-ffi`) and otherwise runs the function uncaptured.
 */

/** The parts of Deno's API used here, typed locally so `src/` type-checks under Node too. */
interface DenoApi {
  readonly build: { readonly os: string };
  readonly env: { get(name: string): string | undefined; set(name: string, value: string): void };
  readonly permissions: { querySync(descriptor: { name: "ffi" }): { state: string } };
  makeTempDirSync(options: { prefix: string }): string;
  makeTempFileSync(options: { prefix: string }): string;
  readTextFileSync(path: string): string;
  removeSync(path: string, options?: { recursive: boolean }): void;
  dlopen(path: string, symbols: LibcSymbolSpec): { symbols: LibcSymbols; close(): void };
}

/** What `process` offers in Node, for the same purpose. */
interface NodeProcess {
  readonly platform: string;
  readonly env: Record<string, string | undefined>;
  once(event: "exit", listener: () => void): void;
  getBuiltinModule?(id: "node:fs"): NodeFs | undefined;
  getBuiltinModule?(id: "node:os"): { tmpdir(): string } | undefined;
  getBuiltinModule?(id: "node:path"): { join(...parts: string[]): string } | undefined;
}

interface NodeFs {
  mkdtempSync(prefix: string): string;
  rmSync(path: string, options: { recursive: boolean; force: boolean }): void;
}

/** The libc functions that move file descriptor 2. */
interface LibcSymbols {
  dup(fd: number): number;
  dup2(from: number, to: number): number;
  close(fd: number): number;
  open(path: Uint8Array<ArrayBuffer>, flags: number): number;
}

type LibcSymbolSpec = Record<keyof LibcSymbols, { parameters: string[]; result: string }>;

const LIBC_SYMBOLS: LibcSymbolSpec = {
  dup: { parameters: ["i32"], result: "i32" },
  dup2: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
};

const STDERR_FD = 2;
const O_WRONLY = 1;

function denoApi(): DenoApi | undefined {
  const deno: unknown = Reflect.get(globalThis, "Deno");
  return typeof deno === "object" && deno !== null ? (deno as DenoApi) : undefined;
}

function nodeProcess(): NodeProcess | undefined {
  if (denoApi()) return undefined;
  const proc: unknown = Reflect.get(globalThis, "process");
  if (typeof proc !== "object" || proc === null) return undefined;
  const versions: unknown = Reflect.get(proc, "versions");
  return typeof versions === "object" && versions !== null && "node" in versions ? (proc as NodeProcess) : undefined;
}

/** libwayland's own test: a value it accepts is an absolute path. */
function isUsableRuntimeDir(value: string | undefined): boolean {
  return value !== undefined && value.startsWith("/");
}

const RUNTIME_DIR_PREFIX = "webgpu-llm-runtime-";

/**
 * Gives the process an `XDG_RUNTIME_DIR` when it has none (or one libwayland rejects): a
 * fresh private directory (mode 0700, as the XDG spec asks), removed when the process
 * exits. Only on Linux, where Mesa's and the Vulkan loader's window-system code reads it.
 * Must run before the first Vulkan instance is made; later calls do nothing. Returns the
 * directory it set, or undefined when it left the environment alone.
 */
export function ensureRuntimeDir(): string | undefined {
  const deno = denoApi();
  if (deno) {
    if (deno.build.os !== "linux" || isUsableRuntimeDir(deno.env.get("XDG_RUNTIME_DIR"))) return undefined;
    const dir = deno.makeTempDirSync({ prefix: RUNTIME_DIR_PREFIX });
    deno.env.set("XDG_RUNTIME_DIR", dir);
    // Deno fires `unload` on a normal end and on `Deno.exit`/`process.exit`.
    globalThis.addEventListener("unload", () => removeQuietly(() => deno.removeSync(dir, { recursive: true })));
    return dir;
  }
  const proc = nodeProcess();
  if (!proc || proc.platform !== "linux" || isUsableRuntimeDir(proc.env.XDG_RUNTIME_DIR)) return undefined;
  const fs = proc.getBuiltinModule?.("node:fs");
  const os = proc.getBuiltinModule?.("node:os");
  const path = proc.getBuiltinModule?.("node:path");
  if (!fs || !os || !path) return undefined; // Node before 20.16: left as it is
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), RUNTIME_DIR_PREFIX));
  proc.env.XDG_RUNTIME_DIR = dir;
  proc.once("exit", () => removeQuietly(() => fs.rmSync(dir, { recursive: true, force: true })));
  return dir;
}

function removeQuietly(remove: () => void): void {
  try {
    remove();
  } catch {
    // An empty directory in the temp folder is all that is left behind.
  }
}

/** What {@link captureNativeStderr} returns: the function's value and what was written meanwhile. */
export interface Captured<T> {
  readonly value: T;
  /** Text written to file descriptor 2 during the call; empty when nothing was, or capture was not possible. */
  readonly stderr: string;
}

/**
 * Runs `fn` (synchronously) with file descriptor 2 pointed at a temporary file, then
 * restores it and returns what was written there. Only the native code `fn` runs
 * synchronously is covered: start the native call inside `fn`, await its promise outside.
 * Without Deno on Linux with FFI allowed, `fn` runs as it is and `stderr` is empty.
 */
export function captureNativeStderr<T>(fn: () => T): Captured<T> {
  const deno = denoApi();
  const libc = deno ? openLibc(deno) : undefined;
  if (!deno || !libc) return { value: fn(), stderr: "" };
  const file = deno.makeTempFileSync({ prefix: "webgpu-llm-stderr-" });
  try {
    const saved = redirectStderr(libc.symbols, file);
    if (saved < 0) return { value: fn(), stderr: "" };
    let value: T;
    try {
      value = fn();
    } finally {
      libc.symbols.dup2(saved, STDERR_FD);
      libc.symbols.close(saved);
    }
    return { value, stderr: deno.readTextFileSync(file) };
  } finally {
    libc.close();
    removeQuietly(() => deno.removeSync(file));
  }
}

function openLibc(deno: DenoApi): { symbols: LibcSymbols; close(): void } | undefined {
  if (deno.build.os !== "linux") return undefined;
  try {
    // Asking would prompt on a terminal; only an FFI permission already granted is used.
    if (deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
    return deno.dlopen("libc.so.6", LIBC_SYMBOLS);
  } catch {
    return undefined; // not glibc (musl), or FFI unavailable: run uncaptured
  }
}

/** Points fd 2 at `file`; returns a duplicate of the old fd 2 to restore, or -1 when nothing moved. */
function redirectStderr(libc: LibcSymbols, file: string): number {
  const saved = libc.dup(STDERR_FD);
  if (saved < 0) return -1;
  const target = libc.open(new TextEncoder().encode(`${file}\0`), O_WRONLY);
  if (target < 0 || libc.dup2(target, STDERR_FD) < 0) {
    if (target >= 0) libc.close(target);
    libc.close(saved);
    return -1;
  }
  libc.close(target);
  return saved;
}
