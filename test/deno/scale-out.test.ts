/**
 * Scale-out as the README documents it: two servers on loopback behind Debian's nginx
 * (the configuration in docs/nginx.conf, with ports filled in). Requests spread over both;
 * when one server is killed, the other takes its share.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { BACKENDS } from "./support/backends.ts";
import { startServer } from "./support/server-process.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const backend = BACKENDS.at(-1)!;

function completionsServed(metrics: string): number {
  const m = /llm_requests_total\{endpoint="\/v1\/completions",status="200"\} (\d+)/.exec(metrics);
  return m ? Number(m[1]) : 0;
}

async function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test(`scale-out[${backend.name}]: two servers behind nginx share requests and survive one dying`, async () => {
  const args = ["--model", MODEL, "--backend", backend.options.backend ?? "webgpu"];
  const servers = await Promise.all([startServer(args), startServer(args)]);
  const dir = await mkdtemp(join(tmpdir(), "nginx-"));
  const port = await freePort();
  const template = await readFile(new URL("../../docs/nginx.conf", import.meta.url), "utf8");
  const [a, b] = servers.map((s) => new URL(s.url).port);
  const conf = template
    .replace("events {}", `daemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents {}`)
    .replace("http {", `http {\n  access_log off;\n  client_body_temp_path ${dir};\n  proxy_temp_path ${dir};`)
    .replace("127.0.0.1:8081", `127.0.0.1:${a}`)
    .replace("127.0.0.1:8082", `127.0.0.1:${b}`)
    .replace("listen 127.0.0.1:8080", `listen 127.0.0.1:${port}`);
  await writeFile(join(dir, "nginx.conf"), conf);
  const nginx = new Deno.Command("nginx", { args: ["-p", dir, "-c", join(dir, "nginx.conf")], stdout: "null", stderr: "piped" }).spawn();
  const base = `http://127.0.0.1:${port}`;
  try {
    // nginx is up once it answers; each try is a real connection attempt, not a sleep.
    let health: Response;
    for (let i = 0; ; i++) {
      try {
        health = await fetch(`${base}/health`);
        break;
      } catch (e) {
        if (i > 10_000) throw e;
      }
    }
    assert.equal(health.status, 200, `through nginx: ${await health.text()}`);
    const complete = (i: number) =>
      fetch(`${base}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: `Request ${i}`, max_tokens: 4, temperature: 0 }),
      });
    const first = await Promise.all(Array.from({ length: 12 }, (_, i) => complete(i)));
    for (const r of first) {
      const body = await r.text();
      assert.equal(r.status, 200, body);
    }
    const counts = await Promise.all(servers.map(async (s) => completionsServed(await (await fetch(`${s.url}/metrics`)).text())));
    assert.equal(counts[0]! + counts[1]!, 12);
    assert.ok(counts[0]! > 0 && counts[1]! > 0, `both servers served requests: ${counts}`);

    await servers[0]!.stop("SIGKILL");
    const second = await Promise.all(Array.from({ length: 8 }, (_, i) => complete(100 + i)));
    for (const r of second) assert.equal(r.status, 200);
    await Promise.all(second.map((r) => r.text()));
    const survivor = completionsServed(await (await fetch(`${servers[1]!.url}/metrics`)).text());
    assert.equal(survivor, counts[1]! + 8);
  } finally {
    nginx.kill("SIGTERM");
    await nginx.status;
    await nginx.stderr.cancel();
    for (const s of servers) await s.stop("SIGTERM");
    await rm(dir, { recursive: true, force: true });
  }
});
