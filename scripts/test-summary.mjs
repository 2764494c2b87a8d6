// Sums the results of every suite that test/run-all.sh ran into one closing line,
// `N passed, N failed`, and exits non-zero when anything failed or a suite left no result.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
const suites = [];

for (const name of readdirSync(dir).filter((f) => f.startsWith("check-"))) {
  const ok = readFileSync(join(dir, name), "utf8").trim() === "pass";
  suites.push({ name: name.slice(6), passed: ok ? 1 : 0, failed: ok ? 0 : 1 });
}

const vitestFile = join(dir, "vitest.json");
if (existsSync(vitestFile)) {
  const v = JSON.parse(readFileSync(vitestFile, "utf8"));
  // A test file that fails to load has no tests but must still count as a failure.
  const brokenFiles = v.testResults.filter((f) => f.status === "failed" && f.assertionResults.length === 0).length;
  suites.push({ name: "vitest", passed: v.numPassedTests, failed: v.numFailedTests + brokenFiles });
} else {
  suites.push({ name: "vitest (no report)", passed: 0, failed: 1 });
}

// Deno ends with e.g. "ok | 12 passed (3 steps) | 0 failed (5s)"; so does scripts/deno-run-tests.ts.
for (const [name, file] of [["deno", "deno.txt"], ["deno-dawn", "deno-dawn.txt"], ["deno-dawn-kernels", "deno-dawn-kernels.txt"]]) {
  const path = join(dir, file);
  if (!existsSync(path)) {
    suites.push({ name: `${name} (not run)`, passed: 0, failed: 1 });
    continue;
  }
  const text = readFileSync(path, "utf8").replace(/\x1b\[[0-9;]*m/g, "");
  const m = [...text.matchAll(/(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g)].at(-1);
  // A suite that ran nothing (a filter or file list gone stale) is a failure, not a pass.
  if (m && Number(m[1]) === 0 && Number(m[2]) === 0) suites.push({ name: `${name} (ran no tests)`, passed: 0, failed: 1 });
  else if (m) suites.push({ name, passed: Number(m[1]), failed: Number(m[2]) });
  else suites.push({ name: `${name} (no summary)`, passed: 0, failed: 1 });
}

// Playwright's JSON reporter: expected (and flaky, which passed on retry) vs unexpected.
for (const [name, file] of [["browser", "browser.json"], ["package", "package.json"]]) {
  const path = join(dir, file);
  if (!existsSync(path)) {
    suites.push({ name: `${name} (no report)`, passed: 0, failed: 1 });
    continue;
  }
  const stats = JSON.parse(readFileSync(path, "utf8")).stats;
  suites.push({ name, passed: stats.expected + stats.flaky, failed: stats.unexpected });
}

let passed = 0;
let failed = 0;
for (const s of suites) {
  console.log(`  ${s.name}: ${s.passed} passed, ${s.failed} failed`);
  passed += s.passed;
  failed += s.failed;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
