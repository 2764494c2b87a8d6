const order = Deno.args[0];
async function builtin(tag){ const a = await navigator.gpu.requestAdapter(); console.log(tag, "builtin:", a?.info.description); }
let dawnGpu;
async function dawn(tag){
  const prev = Deno.env.get("VK_ICD_FILENAMES");
  Deno.env.set("VK_ICD_FILENAMES", "/usr/lib/chromium/vk_swiftshader_icd.json");
  const { create } = await import("webgpu");
  dawnGpu ??= create([]);
  const a = await dawnGpu.requestAdapter();
  if (prev === undefined) Deno.env.delete("VK_ICD_FILENAMES"); else Deno.env.set("VK_ICD_FILENAMES", prev);
  console.log(tag, "dawn:", a?.info.description);
}
async function dawnAgain(tag){ const a = await dawnGpu.requestAdapter(); console.log(tag, "dawn again (env restored):", a?.info.description); if (a) { const d = await a.requestDevice(); console.log("dev ok"); d.destroy(); } }
if (order === "builtin-first") { await builtin(1); await dawn(2); await builtin(3); await dawnAgain(4); }
else { await dawn(1); await builtin(2); await dawnAgain(3); await builtin(4); }
