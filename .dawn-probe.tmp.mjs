const { create, globals } = await import("webgpu");
const gpu = create([]);
const a = await gpu.requestAdapter();
const i = a.info;
console.log(JSON.stringify({vendor:i.vendor, arch:i.architecture, device:i.device, description:i.description, fb: i.isFallbackAdapter}));
const d = await a.requestDevice();
console.log(JSON.stringify({desc: d.adapterInfo?.description}));
const t0 = performance.now();
for (let k=0;k<50;k++){ d.queue.submit([d.createCommandEncoder().finish()]); await d.queue.onSubmittedWorkDone(); }
console.log("owd us", (performance.now()-t0)/50*1000);
d.destroy();
