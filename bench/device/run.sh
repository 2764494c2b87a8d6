#!/usr/bin/env bash
# Runs on the GPU machine (see bench/device/README.md), from the project root, with .gl, .llv
# and .dev/kit carried along. Makes the synthetic models there (too large to bring), then
# measures our runtime (Node + Dawn) and llama.cpp's Vulkan build on the same files.
# Everything lands in $OUT: results.jsonl (one JSON object per measurement), profiles.txt,
# kernels.txt and log.txt.
# usage: bash bench/device/run.sh [quick]
#   DRY=1 bash bench/device/run.sh   checks the script here: tiny models, 16 tokens, SwiftShader
#   SKIP_LLAMACPP=1, SKIP_KERNELS=1   leave those out (when their figures are already in hand)
#   SWEEP=1                           matvec GB/s over kernel and work-group shapes (bench/kernels.ts)
#   COMPARE_SHAPE=workgroup           also run the Q4_K_M models with that --matvec-shape
set -uo pipefail
DRY=${DRY:-}
MODE=${1:-}
N=256; [ -n "$DRY" ] && N=16 && export VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
W=/tmp/w; rm -rf $W; mkdir -p $W/m $W/llv
exec > >(tee -a "$OUT/log.txt") 2>&1
stamp() { echo "[$(date +%T)] $*"; }

stamp setup
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
# The NVIDIA Vulkan driver's manifest, where that machine keeps it (the loader found none alone).
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -z "$DRY" ] && [ -f $icd ] && export VK_DRIVER_FILES=$icd __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
xz -dc .llv/node.xz > $W/node && chmod +x $W/node
tar -xJf .llv/llv.tar.xz -C $W/llv
cp -r .dev/kit/js $W/js && tar -xJf .dev/kit/nm.tar.xz -C $W/js
mkdir -p $W/js/node_modules/webgpu/dist/linux-x64
xz -dc .dev/kit/dawn.node.xz > $W/js/node_modules/webgpu/dist/linux-x64/dawn.node
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
NODE=$W/node
CLI="$NODE $W/js/src/cli/main.js"

stamp "making models"
declare -A MODELS=(
  [llama1b-q4km]="llama-3.2-1b Q4_K_M" [llama1b-q8]="llama-3.2-1b Q8_0"
  [qwen05-q4km]="qwen2.5-0.5b Q4_K_M" [qwen05-q8]="qwen2.5-0.5b Q8_0"
)
makers=()
for name in "${!MODELS[@]}"; do
  set -- ${MODELS[$name]}
  { [ -n "$DRY" ] || [ "$MODE" = quick ]; } && [ $name != llama1b-q4km ] && continue
  [ -n "$DRY" ] && set -- tiny "$2"
  $CLI make-model --preset "$1" --quant "$2" --out $W/m/$name.gguf --distinct-rows 64 > $W/m/$name.log 2>&1 &
  makers+=($!)
done

ours() { # model-file label [tokens [flags...]]
  local file=$1 label=$2 n=${3:-$N}
  shift 3 2>/dev/null || shift $#
  timeout 90 $CLI bench --model "$file" --webgpu dawn --prompt-tokens $n --gen-tokens $n --context 1024 --repetitions 3 --json "$@" \
    | sed "s/^{/{\"engine\":\"ours\",\"file\":\"$label\",/" >> "$OUT/results.jsonl"
}
theirs() { # model-file label [tokens]
  [ -n "${SKIP_LLAMACPP:-}" ] && return
  (cd $W/llv && timeout 90 $NODE llama_bench.mjs "$1" vulkan ${3:-$N}) \
    | sed "s/^{/{\"file\":\"$2\",/" >> "$OUT/results.jsonl"
}
profile() { # model-file label
  { echo "== $2"; timeout 60 $CLI bench --profile --model "$1" --webgpu dawn --prompt-tokens $N --context 1024; echo; } >> "$OUT/profiles.txt" 2>&1
}

EMB=$PWD/models/tiny-fortunes-q8_0.gguf
stamp "embedded model (while the others are made)"
# Its context is 256 positions: 128 + 128 tokens (llama_bench.mjs's prompt is 256 tokens
# long whatever it generates, so llama.cpp cannot run it).
ours "$EMB" tiny-fortunes-q8_0 $((N / 2))
profile "$EMB" tiny-fortunes-q8_0
wait "${makers[@]}"   # not a bare wait: that would also wait for the tee above
cat $W/m/*.log
for name in llama1b-q4km qwen05-q4km llama1b-q8 qwen05-q8; do
  { [ -n "$DRY" ] || [ "$MODE" = quick ]; } && [ $name != llama1b-q4km ] && continue
  stamp "$name"
  ours $W/m/$name.gguf $name
  theirs $W/m/$name.gguf $name
  profile $W/m/$name.gguf $name
  # The previous matvec kernel, for comparison (COMPARE_SHAPE=workgroup).
  [ -n "${COMPARE_SHAPE:-}" ] && [ "${name%-q8}" = "$name" ] && ours $W/m/$name.gguf "$name-$COMPARE_SHAPE" $N --matvec-shape $COMPARE_SHAPE
done
if [ -z "${SKIP_KERNELS:-}" ]; then
  stamp "kernels"
  timeout 60 $NODE $W/js/bench/kernels.js --webgpu dawn --out-dir $W --repetitions 2 --target-ms 50 ${DRY:+--quick} > "$OUT/kernels.txt" 2>&1
fi
if [ -n "${SWEEP:-}" ]; then
  stamp "matvec sweep"
  for size in "8192 2048" "2048 8192"; do
    for shape in "blocks 32 1" "blocks 32 2" "blocks 64 4" "blocks 128 4" "blocks 64 8" "workgroup 64 4"; do
      set -- $size $shape
      echo "== $1×$2, $3, work-group $4 threads, $5 rows" >> "$OUT/sweep.txt"
      timeout 40 $NODE $W/js/bench/kernels.js --webgpu dawn --out-dir $W --skip-matmul --types Q4_K,Q6_K,Q8_0,Q5_0 \
        --rows $1 --cols $2 --matvec-shape $3 --matvec-wg $4 --matvec-rows $5 --repetitions 2 --target-ms 50 \
        ${DRY:+--quick} 2>&1 | grep -E "^(Q|copy)" >> "$OUT/sweep.txt"
    done
  done
fi
stamp done
cat "$OUT/results.jsonl"
