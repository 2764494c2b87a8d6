const a0 = await navigator.gpu.requestAdapter({powerPreference:"high-performance"});
console.log("deno builtin:", a0?.info.description, a0?.info.vendor);
const { create } = await import("webgpu");
const a = await create([]).requestAdapter();
console.log("dawn:", a?.info.description);
const a1 = await navigator.gpu.requestAdapter();
console.log("deno builtin again:", a1?.info.description);
