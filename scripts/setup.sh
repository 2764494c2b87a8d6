#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian machine (as root, with only
# Debian's apt and the npm registry reachable). Safe to run again: it skips what is there.
#   - Deno (npm package `deno`), the runtime of the CLI, the server and the GPU tests
#   - Mesa's lavapipe (`mesa-vulkan-drivers`): software WebGPU where no GPU is present
#   - Chromium: the browser tests (WebGPU on its bundled SwiftShader)
#   - nginx: the scale-out test (two servers behind a load balancer)
#   - the project's npm packages, llama.cpp's prebuilt CPU build and Dawn among them
set -euo pipefail
cd "$(dirname "$0")/.."

DENO_VERSION=2.9.6
APT_PACKAGES=(mesa-vulkan-drivers chromium nginx-light)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]} with apt" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if ! command -v deno >/dev/null || [[ "$(deno --version | head -1)" != "deno $DENO_VERSION"* ]]; then
  echo "setup: installing deno $DENO_VERSION from npm" >&2
  npm install -g --allow-scripts=deno "deno@$DENO_VERSION" >&2
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  # `npm install` rather than `npm ci`: node-llama-cpp lists optional builds for other
  # platforms that the registry does not serve, which `npm ci` refuses as a lock mismatch.
  # Optional packages stay in: Vite's native bundler binding and Dawn (`webgpu`) are optional.
  echo "setup: installing npm packages" >&2
  npm install --no-audit --no-fund >&2
fi
