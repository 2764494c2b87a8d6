#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: installs what it needs (scripts/setup.sh),
# then runs every suite and ends with one line `N passed, N failed` summing all of them.
#   - typecheck: tsc (Node + browser code) and deno check (Deno entry points)
#   - node:      vitest — GGUF, quants, tokenizers, CPU reference, llama.cpp cross-checks
#   - deno:      deno test — WebGPU kernels, model, engine, CLI and server on Mesa lavapipe
#   - deno-dawn: the engine and lookahead suites on Dawn (npm `webgpu`, SwiftShader here),
#                and the kernel variants whose tests need Dawn (Tint, subgroups)
#   - browser:   Playwright — the demo page in Chromium (WebGPU on SwiftShader)
#   - package:   the npm package packed, installed and used from Node, Deno and a browser page
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

results=.cache/test-results
rm -rf "$results"; mkdir -p "$results"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

run_check() { # name, command...: a check counts as one test
  local name=$1; shift
  echo "=== $name: $*"
  if "$@"; then echo "pass" >"$results/check-$name"; else echo "fail" >"$results/check-$name"; fi
}

run_check tsc npx tsc --noEmit -p tsconfig.json
run_check deno-check deno check src/cli/main.ts

# Dawn (npm `webgpu`) refuses lavapipe here and runs on Chromium's SwiftShader.
DAWN_ICD=/usr/lib/chromium/vk_swiftshader_icd.json

echo "=== node suites (vitest; Dawn on SwiftShader for test/node/dawn)"
DAWN_VK_ICD=$DAWN_ICD npx vitest run --reporter=default --reporter=json --outputFile.json="$results/vitest.json"

echo "=== deno suites (WebGPU on $(deno eval 'const a = await navigator.gpu?.requestAdapter(); console.log(a?.info.description ?? "no adapter")' 2>/dev/null))"
if ls test/deno/*.test.ts >/dev/null 2>&1; then
  deno test -A --no-check=remote test/deno/ 2>&1 | tee "$results/deno.txt"
fi

echo "=== deno suites on Dawn (engine, lookahead; under deno run: Dawn starves under deno test)"
DAWN_VK_ICD=$DAWN_ICD TEST_BACKENDS=webgpu-dawn deno run -A scripts/deno-run-tests.ts \
  test/deno/engine.test.ts test/deno/lookahead.test.ts 2>&1 | tee "$results/deno-dawn.txt"

echo "=== kernel variants on Dawn (Tint's compiler, subgroups: the tests that run only when DAWN_VK_ICD is set)"
DAWN_VK_ICD=$DAWN_ICD deno test -A --no-check=remote --filter "DAWN_VK_ICD is set" test/deno/gpu-matmul.test.ts test/deno/gpu-ops-families.test.ts 2>&1 \
  | tee "$results/deno-dawn-kernels.txt"

echo "=== browser suite (Playwright, Chromium, WebGPU on SwiftShader)"
BROWSER_REPORT="$PWD/$results/browser.json" npm run test:browser

echo "=== package suite (npm pack, install, use from Node, Deno and a Vite page)"
PACKAGE_REPORT="$PWD/$results/package.json" npm run test:package

node scripts/test-summary.mjs "$results"
