/**
 * Runs Deno test files under `deno run` instead of `deno test`: the way to run the suites
 * on Dawn (the npm package `webgpu`) inside Deno.
 *
 * Why: under `deno test`, while Dawn waits for its own work it polls through
 * `setImmediate`, and the test runner's event loop turns that into two threads spinning
 * (the main thread and a tokio worker). Dawn's own work barely progresses then: on the
 * 2-core test machine the tiny model's pipelines took 215 s to create instead of 12 s, and
 * reads of sampled ids ran past the runner's 60 s bound. Under `deno run` (and in Node) the
 * same code behaves.
 *
 * Supports what our suites use: `Deno.test(name, fn)`, `Deno.test({ name, fn, ignore })`
 * and `t.step(name, fn)`. Tests run one after another, in file order; the last line is
 * Deno's summary format (`ok | 3 passed (5 steps) | 0 failed (40s)`).
 *
 *   deno run -A scripts/deno-run-tests.ts [--filter text] test/deno/lookahead.test.ts ...
 */
import { resolve } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";

type StepFn = (t: StepContext) => unknown;
interface StepContext {
  readonly name: string;
  step(name: string, fn: StepFn): Promise<boolean>;
}
interface Collected {
  readonly name: string;
  readonly fn: StepFn;
  readonly ignore: boolean;
}

const collected: Collected[] = [];

function isStepFn(value: unknown): value is StepFn {
  return typeof value === "function";
}

/** `Deno.test`'s two forms that our suites use. */
function register(first: unknown, second?: unknown): void {
  if (typeof first === "string" && isStepFn(second)) {
    collected.push({ name: first, fn: second, ignore: false });
    return;
  }
  if (typeof first === "object" && first !== null) {
    const name: unknown = Reflect.get(first, "name");
    const fn: unknown = Reflect.get(first, "fn");
    if (typeof name === "string" && isStepFn(fn)) {
      collected.push({ name, fn, ignore: Reflect.get(first, "ignore") === true });
      return;
    }
  }
  throw new TypeError("deno-run-tests: unsupported Deno.test form (use (name, fn) or { name, fn, ignore })");
}

const seconds = (ms: number): string => (ms >= 1000 ? `${(ms / 1000).toFixed(0)}s` : `${ms.toFixed(0)}ms`);

/** Runs `fn` with a context whose steps report under `indent`; resolves to [passed, steps run]. */
async function run(name: string, fn: StepFn, indent: string): Promise<{ ok: boolean; steps: number }> {
  let failedSteps = 0;
  let steps = 0;
  const context: StepContext = {
    name,
    async step(stepName, stepFn) {
      console.log(`${indent}  ${stepName} ...`);
      const started = performance.now();
      const result = await run(stepName, stepFn, `${indent}  `);
      steps += 1 + result.steps;
      console.log(`${indent}  ${stepName} ... ${result.ok ? "ok" : "FAILED"} (${seconds(performance.now() - started)})`);
      if (!result.ok) failedSteps++;
      return result.ok;
    },
  };
  try {
    await fn(context);
  } catch (error) {
    console.log(`${indent}  error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return { ok: false, steps };
  }
  return { ok: failedSteps === 0, steps };
}

async function main(args: string[]): Promise<number> {
  let filter: string | undefined;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--filter") filter = args[++i];
    else files.push(args[i]!);
  }
  if (files.length === 0) {
    console.error("usage: deno run -A scripts/deno-run-tests.ts [--filter text] file.test.ts ...");
    return 2;
  }
  // `Deno.test` is a no-op under `deno run`; collect the definitions instead. (Reached
  // through globalThis so that tsc, which type-checks scripts/ without Deno's types, agrees.)
  const deno: unknown = Reflect.get(globalThis, "Deno");
  if (typeof deno !== "object" || deno === null) {
    console.error("deno-run-tests: run this with `deno run -A`");
    return 2;
  }
  Object.defineProperty(deno, "test", { value: register, configurable: true, writable: true });
  for (const file of files) await import(pathToFileURL(resolve(file)).href);

  const started = performance.now();
  let passed = 0;
  let failed = 0;
  let steps = 0;
  for (const test of collected) {
    if (filter !== undefined && !test.name.includes(filter)) continue;
    if (test.ignore) {
      console.log(`${test.name} ... ignored`);
      continue;
    }
    console.log(`${test.name} ...`);
    const t0 = performance.now();
    const result = await run(test.name, test.fn, "");
    steps += result.steps;
    console.log(`${test.name} ... ${result.ok ? "ok" : "FAILED"} (${seconds(performance.now() - t0)})`);
    if (result.ok) passed++;
    else failed++;
  }
  const stepText = steps > 0 ? ` (${steps} steps)` : "";
  console.log(`${failed === 0 ? "ok" : "FAILED"} | ${passed} passed${stepText} | ${failed} failed (${seconds(performance.now() - started)})`);
  return failed === 0 ? 0 : 1;
}

process.exit(await main(process.argv.slice(2)));
