#!/usr/bin/env bash
# Everything the GPU issue is checked by, in one run on a CUDA machine (the lent H200; ../shared/GPU.md):
#   1. install the GPU build beside this checkout (from wheels carried in .gpu/, no network);
#   2. `inspect bench --tune` of the die and PCB classifiers on CUDA (the provider settings and lanes tried per
#      precision and the winner recorded, FP32, FP16, CUDA graphs, the transfer share, uint8 input, the 200 fps
#      micro-batched stream with its slowest 1% by phase, PyTorch eager and compiled);
#   3. the GPU tests (parity for decisions, CUDA graphs, lanes, uint8 pre-step; TensorRT skips, naming why);
#   4. `inspect doctor` (every shipped variant loaded on the CPU and CUDA, each checked against its card's check
#      inputs);
#   5. the wafer-map CNN trained for 3 epochs on the 49,661 WM-811K maps, timed per epoch (where carried).
# Bounded: each step has its own time limit (390 s in all, install aside) and each bench configuration its own
# (--config-limit); the bench rewrites its record after every configuration, so a step cut short keeps what it
# measured. Records go to $OUT (or benchmarks/results); the log says where each step stands and how it ended.
#
#   bash benchmarks/gpu_check.sh [WHEEL_FOLDER] [WM811K_NPZ]
#
# With the device tool (64 MiB a call, the checkout itself ~22 MB): .gpu/ is prepared here as GPU.md says, the
# wheel's contents as one xz tarball (203 MB against the wheel's 255 MB: one call fewer) cut in pieces of 44 MB,
# .gpu/c00/part.00 .. .gpu/c04/part.04, with .gpu/ort.sha256 and .gpu/whl; then one call per piece, carry
# [".gpu/c0N"]: `mkdir -p /tmp/w && cp .gpu/c0N/part.0N /tmp/w/ && ls -l /tmp/w` (a piece copied twice is
# still one piece), and the last piece with [".gpu/c04", ".gpu/whl", ".gpu/ort.sha256"]:
# `mkdir -p /tmp/w && cp .gpu/c04/part.04 /tmp/w/ && OUT=$OUT bash benchmarks/gpu_check.sh`.
#
# WHEEL_FOLDER (default /tmp/w) holds the pieces part.00 .. (joined and checked against .gpu/ort.sha256), or the
# joined ort.tar.xz, or an onnxruntime_gpu-*.whl; .gpu/whl holds the pure-Python wheels the machine lacks
# (GPU.md's list, plus pytest, iniconfig, pluggy and packaging for the tests); WM811K_NPZ defaults to
# .gpu/wm811k_dev.npz (8 MB; the training step is skipped without it). A machine that already has
# wafer-inspect[gpu] installed needs none of it: the install step is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
wheels=${1:-/tmp/w}
maps=${2:-.gpu/wm811k_dev.npz}
out=${OUT:-benchmarks/results}
mkdir -p "$out"
step() { echo "=== $(date -u +%H:%M:%S) $*"; }
failed() {  # failed STEP: the record of a run that could not go on, then stop
  echo "{\"gpu_check\": \"stopped\", \"step\": \"$1\", \"date\": \"$(date -u +%FT%TZ)\"}" > "$out/gpu-check-$1.json"
  echo "=== $1 failed: recorded in $out/gpu-check-$1.json"; exit 1
}
bounded() {  # bounded SECONDS COMMAND...: run it, say how it ended, never stop the script
  local limit=$1; shift
  timeout --kill-after=5 "$limit" "$@"; local rc=$?
  # to stderr: a step's stdout may be its record (doctor's JSON)
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "=== stopped at its limit of $limit s" >&2; elif [ $rc -ne 0 ]; then echo "=== exit $rc" >&2; fi
  return 0
}

if ! python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
  step "install the GPU build from $wheels"
  if ls "$wheels"/part.0* >/dev/null 2>&1 && [ ! -f "$wheels/ort.tar.xz" ]; then cat "$wheels"/part.0* > "$wheels/ort.tar.xz"; fi
  if [ -f "$wheels/ort.tar.xz" ]; then
    # checked against the hash taken before splitting, then unpacked as pip would unpack the wheel
    if [ -f .gpu/ort.sha256 ]; then (cd "$wheels" && sha256sum -c "$OLDPWD/.gpu/ort.sha256") || failed install-checksum; fi
    mkdir -p /tmp/site && python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
      "$wheels/ort.tar.xz" /tmp/site || failed install-unpack
  else
    python3 -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/onnxruntime_gpu-*.whl || failed install-wheel
  fi
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl || failed install-wheels
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null || failed install-package

# The benches first: they are what the GPU targets are measured by. Each configuration starts its own process
# (2-6 s of start-up), so the sizes are few: 1 (latency), 1,024 (the largest bucket) and 4,096 (where PyTorch
# peaks); the stream runs right after the core's configurations, torch.compile last.
step "bench: die classifier"
bounded 200 python3 -m inspection bench models/die-patchnet-v1 --device cuda --fp16 --cuda-graph --compile --tune \
  --batch-sizes 1,1024,4096 --seconds 0.5 --config-limit 40 --out "$out" 2>&1 | grep -v "benchmarking:\|cudnn_fe"
step "bench: PCB classifier"
bounded 100 python3 -m inspection bench models/pcb-patchnet-l-v7 --device cuda --fp16 --cuda-graph --tune \
  --batch-sizes 1,1024 --seconds 0.5 --config-limit 30 --out "$out" 2>&1 | grep -v "benchmarking:\|cudnn_fe"

step "GPU tests"
bounded 50 python3 -m pytest -q -p no:cacheprovider -m gpu tests/classify -rfs --tb=line 2>&1 | grep -v cudnn_fe | tail -25

step "doctor"
bounded 40 python3 -m inspection doctor --device cpu --device cuda --device trt --json > "$out/doctor-gpu.json"
python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print('\n'.join(r['problems']) or 'no problems'); \
print('tensorrt:', r.get('tensorrt'))" "$out/doctor-gpu.json" 2>&1 | tail -8


if [ -f "$maps" ]; then
  step "wafer-map CNN training on $maps, 3 epochs"
  bounded 50 python3 -m inspection wafermap train "$maps" --out /tmp/wm-gpu --epochs 3 --arch resnet18 --img-size 64 \
    --batch-size 512 --device cuda 2>&1 | grep -E "^epoch|images/s|error" | tail -5
  python3 -c "import json; h = json.load(open('/tmp/wm-gpu/model.json'))['training']['history']; \
print('train_s per epoch:', [e['train_s'] for e in h])" 2>&1 | tail -1
else
  step "no $maps: wafer-map training skipped"
fi
step "done"
