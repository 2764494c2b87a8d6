#!/usr/bin/env bash
# The GPU suites on Dawn (the optional npm package `webgpu`), under Node and under Deno:
#   - node: vitest test/node/dawn (the engine on Dawn against the CPU reference, providers)
#   - deno: the engine-level suites (engine, lookahead) with only the webgpu-dawn backend,
#           through scripts/deno-run-tests.ts: under `deno test` Dawn starves (see there)
# DAWN_VK_ICD names the Vulkan driver manifest Dawn uses (default: Chromium's SwiftShader,
# since Dawn refuses Mesa's lavapipe), or `default` for the machine's own drivers (a GPU).
# Needs the optional npm package `webgpu` (scripts/setup.sh installs optional packages).
# Usage: bash scripts/test-dawn.sh [node|deno]...   (both by default)
set -uo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export DAWN_VK_ICD="${DAWN_VK_ICD:-/usr/lib/chromium/vk_swiftshader_icd.json}"

if [[ "$DAWN_VK_ICD" != default && ! -f "$DAWN_VK_ICD" ]]; then
  echo "test-dawn: $DAWN_VK_ICD does not exist (Debian: apt-get install chromium)" >&2
  exit 1
fi
if [[ ! -f node_modules/webgpu/package.json ]]; then
  echo "test-dawn: the npm package webgpu is not installed (bash scripts/setup.sh, or npm install)" >&2
  exit 1
fi

suites=("$@")
((${#suites[@]} > 0)) || suites=(node deno)
status=0
for suite in "${suites[@]}"; do
  case "$suite" in
    node) npx vitest run test/node/dawn || status=1 ;;
    deno) TEST_BACKENDS=webgpu-dawn deno run -A scripts/deno-run-tests.ts test/deno/engine.test.ts test/deno/lookahead.test.ts || status=1 ;;
    *) echo "test-dawn: unknown suite $suite (node or deno)" >&2; exit 2 ;;
  esac
done
exit "$status"
