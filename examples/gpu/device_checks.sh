#!/usr/bin/env bash
# The GPU checks, run once on an NVIDIA machine from the repository root:
#     bash examples/gpu/device_checks.sh OUT_DIR
# It needs torch with CUDA and onnxruntime (onnxruntime-gpu for the CUDA provider rows), plus
# nscompile's pure-Python dependencies; wheels in .whl/ (if any) are installed to /tmp/site first.
set -uo pipefail
out="${1:-/tmp/nscompile-gpu}"
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch, onnxruntime as ort, sys; print(sys.version.split()[0], torch.__version__, \
torch.cuda.is_available(), ort.__version__, ort.get_available_providers())" 2>&1 | tee -a "$out/gpu.txt"
echo "== nscompile bench, the O = 128 TD layers, CUDA columns"
timeout 240 python3 -m nscompile bench examples/td_wide.ns --device cuda --json "$out/bench_cuda.json" \
    --plot "$out/bench_cuda.png" 2>&1 | tee "$out/bench_cuda.txt"
echo "== generated TD layer vs unfused, CUDA"
timeout 150 python3 examples/bench_codegen.py --device cuda 2>&1 | tee "$out/bench_codegen_cuda.txt"
echo "== generated TD layer vs unfused, CPU (all cores)"
timeout 100 python3 examples/bench_codegen.py 2>&1 | tee "$out/bench_codegen_cpu.txt"
echo "== ONNX emission, onnxruntime vs torch (CPU and CUDA)"
timeout 200 python3 examples/bench_onnx.py --device cuda --json "$out/bench_onnx_gpu.json" 2>&1 \
    | tee "$out/bench_onnx_gpu.txt"
echo "== asking onnxruntime for CUDA must fail loudly when it cannot give it"
timeout 60 python3 examples/deploy_onnx.py --provider cuda 2>&1 | tee "$out/deploy_cuda.txt"
echo "deploy_onnx --provider cuda exit status: $?"
