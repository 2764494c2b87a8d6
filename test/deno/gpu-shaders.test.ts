/**
 * The embedded shader module matches shaders/*.wgsl, and the preprocessor does what
 * src/gpu/shader-source.ts documents. Needs no GPU.
 * Run: deno test -A test/deno/gpu-shaders.test.ts
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { GpuError } from "../../src/errors.ts";
import { preprocessShader } from "../../src/gpu/shader-source.ts";
import { SHADER_SOURCES } from "../../src/gpu/shaders.generated.ts";

const shaderDir = new URL("../../shaders/", import.meta.url);

Deno.test("shaders.generated.ts is up to date with shaders/*.wgsl (run node scripts/embed-shaders.mjs)", async () => {
  const files = (await readdir(shaderDir)).filter((f) => f.endsWith(".wgsl")).sort();
  assert.deepEqual(Object.keys(SHADER_SOURCES).sort(), files, "embedded file names differ from shaders/");
  for (const file of files) {
    const text = await readFile(new URL(file, shaderDir), "utf8");
    assert.equal(SHADER_SOURCES[file], text, `${file} changed since it was embedded`);
  }
});

const sources = {
  "a.wgsl": [
    "top",
    "#if X",
    "x {{N}}",
    "#elif Y || Z",
    "y or z",
    "#else",
    "neither",
    "#endif",
    "#if X && !Y",
    "x-not-y",
    "#endif",
    '#include "b.wgsl"',
    '#include "b.wgsl"',
    "end",
  ].join("\n"),
  "b.wgsl": ["#if X", "  #if Y", "xy", "  #else", "x only", "  #endif", "#endif", "b"].join("\n"),
  "bad.wgsl": "#if X\nno end",
  "typo.wgsl": "{{MISSING}}",
};

Deno.test("preprocessor: #if/#elif/#else, nesting, ||, &&, !, {{NAME}}, #include once", () => {
  assert.equal(preprocessShader("a.wgsl", { X: true, N: 3 }, sources), "top\nx 3\nx-not-y\nx only\nb\nend");
  assert.equal(preprocessShader("a.wgsl", { Z: 1 }, sources), "top\ny or z\nb\nend");
  assert.equal(preprocessShader("a.wgsl", { X: true, Y: true, N: "n" }, sources), "top\nx n\nxy\nb\nend");
  assert.equal(preprocessShader("a.wgsl", { X: false, Y: 0, Z: "" }, sources), "top\nneither\nb\nend");
});

Deno.test("preprocessor: errors name the file and line", () => {
  assert.throws(() => preprocessShader("bad.wgsl", {}, sources), (e) => e instanceof GpuError && /bad\.wgsl:2: unterminated #if/.test(e.message));
  assert.throws(() => preprocessShader("typo.wgsl", {}, sources), (e) => e instanceof GpuError && /typo\.wgsl:1: \{\{MISSING\}\} has no define/.test(e.message));
  assert.throws(() => preprocessShader("nope.wgsl", {}, sources), (e) => e instanceof GpuError && /no embedded shader named "nope\.wgsl"/.test(e.message));
});
