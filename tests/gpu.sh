#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU:
#   1. builds sweep with the `cuda` feature (tests/cuda-build.sh: its own CUDA 13 toolkit from PyPI),
#   2. runs the training benchmark on cuda:0 (MLM and classification, tokens/s; PyTorch on the
#      same GPU beside it when SWEEP_TORCH_PYTHON or .venv-torch has a torch with CUDA),
#   3. runs a 4-trial fine-tuning study on GPU 0 and checks every trial ran there and finished.
#
# Needs the NVIDIA driver (libcuda.so.1, nvidia-smi). Everything it writes is under target/gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv
out=target/gpu
rm -rf "$out" && mkdir -p "$out"

bin=$(tests/cuda-build.sh)
# The wheels' libraries (cuBLAS, cuRAND, NVRTC, the runtime) at run time; the driver is the machine's.
export LD_LIBRARY_PATH=$PWD/target/cuda-toolkit/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

echo "== training throughput on cuda:0"
SWEEP_BENCH_DEVICE=cuda:0 tests/cuda-build.sh bench --locked --features cuda --target-dir target/cuda --bench training

echo "== a 4-trial study on GPU 0"
sed -e 's/^trials = 8/trials = 4/' -e 's/^name = "quickstart"/name = "gpu-check"/' studies/quickstart.toml >"$out/gpu-check.toml"
printf '\n[devices]\ngpus = [0]\nper_gpu = 2\n' >>"$out/gpu-check.toml"
# What runs on the GPU, sampled every second: the workers must show up here.
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader -l 1 >"$out/gpu-apps.log" &
watcher=$!
start=$(date +%s)
"$bin" run "$out/gpu-check.toml" --db "$out/gpu.db" --no-progress
echo "study wall time: $(($(date +%s) - start)) s"
kill "$watcher"
grep -q sweep "$out/gpu-apps.log" || { echo "no sweep process was seen on the GPU" >&2; exit 1; }
"$bin" export gpu-check --db "$out/gpu.db" --format csv >"$out/trials.csv"
cat "$out/trials.csv"
python3 - "$out/trials.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 4, f"expected 4 trials, found {len(rows)}"
bad = [r for r in rows if r["state"] not in ("complete", "pruned") or r.get("device") not in ("0", "cuda:0")]
assert not bad, f"trials that did not finish on GPU 0: {bad}"
print("gpu check: 4 trials finished on GPU 0")
EOF
