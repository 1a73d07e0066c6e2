#!/usr/bin/env bash
# Everything the GPU issue is checked by, in one run on a CUDA machine (the lent H200; ../shared/GPU.md):
#   1. install the GPU build beside this checkout (from wheels carried in .gpu/, no network), `inspect doctor`;
#   2. the GPU tests (parity for decisions, CUDA graphs, TensorRT when present);
#   3. `inspect bench` of the die and PCB classifiers on CUDA (FP32, FP16, CUDA graphs, PyTorch eager and
#      compiled, the 200 fps micro-batched stream);
#   4. the wafer-map CNN trained for 3 epochs on the 49,661 WM-811K maps, timed per epoch.
# Records go to $OUT (or benchmarks/results); the log says where each step stands.
#
#   bash benchmarks/gpu_check.sh [WHEEL_FOLDER] [WM811K_NPZ]
#
# With the device tool (64 MiB a call, the checkout itself ~21 MB): .gpu/ is prepared here as GPU.md says
# (.gpu/c00..c06 the wheel's pieces, .gpu/ort.sha256, .gpu/whl, .gpu/wm811k_dev.npz); then one call per piece,
# carry [".gpu/c0N"]: `mkdir -p /tmp/w && cat .gpu/c*/* >> /tmp/w/ort.whl`, and a last call, carry
# [".gpu/whl", ".gpu/ort.sha256", ".gpu/wm811k_dev.npz"]: `OUT=$OUT bash benchmarks/gpu_check.sh`.
#
# WHEEL_FOLDER holds onnxruntime_gpu-*.whl (default /tmp/w: see GPU.md for carrying the 255 MB wheel in pieces);
# .gpu/whl holds the pure-Python wheels the machine lacks (GPU.md's list, plus pytest, iniconfig, pluggy and
# packaging for the tests); WM811K_NPZ defaults to .gpu/wm811k_dev.npz (8 MB, carried with the last piece). A
# machine that already has wafer-inspect[gpu] installed needs none of it: the install step is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
wheels=${1:-/tmp/w}
maps=${2:-.gpu/wm811k_dev.npz}
out=${OUT:-benchmarks/results}
mkdir -p "$out"
step() { echo "=== $(date -u +%H:%M:%S) $*"; }

if ! python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
  step "install the GPU build from $wheels"
  if [ -f "$wheels/ort.whl" ] && ! ls "$wheels"/onnxruntime_gpu-*.whl >/dev/null 2>&1; then
    # the pieces of .gpu/c*/ concatenated there (GPU.md); checked against the hash taken before splitting
    if [ -f .gpu/ort.sha256 ]; then (cd "$wheels" && sha256sum -c "$OLDPWD/.gpu/ort.sha256") || exit 1; fi
    cp "$wheels/ort.whl" "$wheels/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl"
  fi
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/onnxruntime_gpu-*.whl .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null || exit 1
inspect() { python3 -m inspection "$@"; }

step "doctor"
inspect doctor --device cpu --device cuda --device trt --json | tee "$out/doctor-gpu.json"

step "GPU tests"
python3 -m pytest -q -p no:cacheprovider -m gpu tests/classify -rs 2>&1 | tail -15

step "bench: die classifier"
inspect bench models/die-patchnet-v1 --device cuda --fp16 --cuda-graph --compile --batch-sizes 1,64,256,1024,4096 \
  --seconds 2 --out "$out" 2>&1 | grep -v "benchmarking:"
step "bench: PCB classifier"
inspect bench models/pcb-patchnet-l-v7 --device cuda --fp16 --cuda-graph --batch-sizes 1,64,256,1024 --seconds 2 \
  --out "$out" 2>&1 | grep -v "benchmarking:"

if [ -f "$maps" ]; then
  step "wafer-map CNN training on $maps, 3 epochs"
  inspect wafermap train "$maps" --out /tmp/wm-gpu --epochs 3 --arch resnet18 --img-size 64 --batch-size 512 \
    --device cuda 2>&1 | grep -E "^epoch|images/s|error" | tail -5
  python3 -c "import json; h = json.load(open('/tmp/wm-gpu/model.json'))['training']['history']; \
print('train_s per epoch:', [e['train_s'] for e in h])"
else
  step "no $maps: wafer-map training skipped"
fi
step "done"
