#!/usr/bin/env bash
# Packs what a GPU machine without Node, Deno or network needs to run our benchmarks next to
# llama.cpp's Vulkan build (see bench/device/README.md). Run from the project root, after
# `bash ../shared/tools/llamacpp-vulkan/pack.sh .llv` (which brings node and node-llama-cpp).
#   .dev/kit/js/         the CLI and bench/kernels.ts compiled to plain ES modules (tsc)
#   .dev/kit/nm.tar.xz   runtime node_modules: @huggingface/{gguf,jinja,tasks}, webgpu (no binaries)
#   .dev/kit/dawn.node.xz  Dawn's linux-x64 binary
#   .gl/*.deb            the Vulkan loader (the GPU driver is on the machine)
set -euo pipefail
kit=.dev/kit
rm -rf "$kit" && mkdir -p "$kit"
node scripts/embed-shaders.mjs >/dev/null
cat > .dev/tsconfig.kit.json <<'JSON'
{ "extends": "../tsconfig.build.json",
  "compilerOptions": { "outDir": "kit/js", "declaration": false, "rootDir": ".." },
  "files": ["../src/cli/main.ts", "../bench/kernels.ts"] }
JSON
npx tsc -p .dev/tsconfig.kit.json
echo '{"type":"module"}' > "$kit/js/package.json"
tar -cJf "$kit/nm.tar.xz" --exclude='webgpu/dist' \
  node_modules/@huggingface/gguf node_modules/@huggingface/jinja node_modules/@huggingface/tasks node_modules/webgpu
xz -T2 -9e -c node_modules/webgpu/dist/linux-x64/dawn.node > "$kit/dawn.node.xz"
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null && (cd .gl && apt-get $o download libvulkan1 >/dev/null)
fi
du -sh "$kit" .gl .llv 2>/dev/null
