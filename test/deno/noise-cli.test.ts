/**
 * A quiet first run: the README's first command, on a machine without a desktop session
 * (no XDG_RUNTIME_DIR), prints the text and nothing on stderr. It used to print four
 * `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` lines (libwayland,
 * loaded by the Vulkan drivers of Dawn and of Deno) and Dawn's three-line
 * `Warning: Vulkan shaderUniform*ArrayDynamicIndexing required … PhysicalDeviceVk.cpp`
 * (auto probes Dawn first, and Dawn refuses lavapipe).
 *
 * Real processes, real drivers: each case runs a child with the environment a user would
 * have, minus the variable.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";

const REPO = new URL("../../", import.meta.url);
const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

/** This process's environment without XDG_RUNTIME_DIR, plus `extra`. */
function envWithoutRuntimeDir(extra: Record<string, string> = {}): Record<string, string> {
  const env = { ...Deno.env.toObject(), ...extra };
  delete env.XDG_RUNTIME_DIR;
  return env;
}

async function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    clearEnv: true,
    env,
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** The stderr lines that are native libraries' noise (or any error at all). */
function noiseLines(stderr: string): string[] {
  return stderr.split("\n").filter((line) => /error:|Warning:|XDG_RUNTIME_DIR|\.cpp:/i.test(line));
}

Deno.test("noise: generate without XDG_RUNTIME_DIR prints the text and nothing on stderr", async () => {
  // The environment as it is, minus the variable: on lavapipe, auto probes Dawn (refused)
  // and runs on Deno's WebGPU; under DAWN_VK_ICD-style set-ups it may run on Dawn.
  const env = envWithoutRuntimeDir();
  const { code, stdout, stderr } = await run(
    ["run", "-A", "src/cli/main.ts", "generate", "--prompt", "The meaning of life is", "--max-tokens", "4", "--temperature", "0"],
    env,
  );
  assert.equal(code, 0, stderr);
  assert.deepEqual(noiseLines(stderr), [], `stderr:\n${stderr}`);
  assert.equal(stderr, "", "nothing else on stderr either");
  assert.ok(stdout.trim().length > 0, "some text was generated");
});

Deno.test("noise: the runtime directory it sets is private, absolute, and gone after exit", async () => {
  const script = [
    'import { resolveWebGpu } from "./src/gpu/provider.ts";',
    "await resolveWebGpu('deno');",
    'const dir = Deno.env.get("XDG_RUNTIME_DIR") ?? "";',
    "console.log(JSON.stringify({ dir, mode: Deno.statSync(dir).mode! & 0o777 }));",
  ].join("\n");
  const { code, stdout, stderr } = await run(["eval", script], envWithoutRuntimeDir());
  assert.equal(code, 0, stderr);
  const { dir, mode } = JSON.parse(stdout);
  assert.ok(dir.startsWith("/"), dir);
  assert.equal(mode, 0o700);
  assert.equal(existsSync(dir), false, `${dir} was removed at exit`);
});

Deno.test("noise: a runtime directory the user set is left alone", async () => {
  const script = [
    'import { resolveWebGpu } from "./src/gpu/provider.ts";',
    "await resolveWebGpu('deno');",
    'console.log(Deno.env.get("XDG_RUNTIME_DIR"));',
  ].join("\n");
  const { code, stdout, stderr } = await run(["eval", script], { ...envWithoutRuntimeDir(), XDG_RUNTIME_DIR: "/tmp" });
  assert.equal(code, 0, stderr);
  assert.equal(stdout.trim(), "/tmp");
});

Deno.test({
  name: "noise: where Dawn works (SwiftShader), auto still picks Dawn, quietly",
  ignore: !existsSync(SWIFTSHADER_ICD),
  async fn() {
    const script = [
      'import { resolveWebGpu } from "./src/gpu/provider.ts";',
      "console.log((await resolveWebGpu('auto')).provider);",
    ].join("\n");
    const { code, stdout, stderr } = await run(["eval", script], envWithoutRuntimeDir({ VK_ICD_FILENAMES: SWIFTSHADER_ICD }));
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trim(), "dawn");
    assert.deepEqual(noiseLines(stderr), [], `stderr:\n${stderr}`);
  },
});

Deno.test("noise: --webgpu dawn where Dawn refuses every adapter names Dawn's reason in the error", async () => {
  // Mesa's lavapipe only: Dawn refuses it. Skipped in effect where Dawn finds an adapter.
  const script = [
    'import { resolveWebGpu } from "./src/gpu/provider.ts";',
    "try { await resolveWebGpu('dawn'); console.log('found'); }",
    "catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }",
  ].join("\n");
  const { code, stdout, stderr } = await run(["eval", script], envWithoutRuntimeDir({ VK_ICD_FILENAMES: "" }));
  assert.equal(code, 0, stderr);
  if (stdout.trim() === "found") return;
  const error = JSON.parse(stdout);
  assert.equal(error.code, "NO_ADAPTER");
  assert.match(error.message, /Dawn found no GPU adapter \(Dawn: Warning: .+\)/);
  assert.deepEqual(noiseLines(stderr), [], `the reason went into the error, not stderr:\n${stderr}`);
});
