#!/usr/bin/env bash
# Compiles sweep with the `cuda` feature on a machine without a GPU or a CUDA install.
#
# The CUDA 13.0 compiler, headers and libraries come from NVIDIA's PyPI wheels, installed into
# target/cuda-toolkit (about 1.2 GB, once). The driver library (libcuda.so) is not on PyPI: a
# stub with the driver's symbols, made from cudarc's own list, stands in at link time only; the
# binary records `libcuda.so.1`, which a GPU machine's driver provides. Kernels are built for
# CUDA_COMPUTE_CAP (default 90, an H100/H200); their PTX also runs on newer GPUs.
#
# Usage: tests/cuda-build.sh              builds target/cuda/release/sweep and prints its path
#        tests/cuda-build.sh ARGS...      runs `cargo ARGS...` with the toolkit set up instead
set -euo pipefail
cd "$(dirname "$0")/.."

toolkit=$PWD/target/cuda-toolkit
cuda=$toolkit/nvidia/cu13
version=13.0.*
packages=("nvidia-cuda-nvcc==$version" "nvidia-cuda-crt==$version" "nvidia-cuda-cccl==$version"
    "nvidia-nvvm==$version" "nvidia-cuda-runtime==$version" "nvidia-cuda-nvrtc==$version"
    "nvidia-cublas==$version" "nvidia-curand==10.4.0.*")

# pip cannot add to a --target folder, so a changed package list installs afresh.
if [ "$(cat "$toolkit/packages" 2>/dev/null)" != "${packages[*]}" ]; then
    echo "installing the CUDA $version toolkit from PyPI into $toolkit" >&2
    rm -rf "$toolkit"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$toolkit" "${packages[@]}"
    echo "${packages[*]}" >"$toolkit/packages"
fi

# The linker looks for unversioned names; the wheels ship only the versioned ones.
for lib in "$cuda"/lib/lib*.so.*; do
    name=$(basename "$lib")
    ln -sf "$name" "$cuda/lib/${name%%.so.*}.so"
done

# The driver's stub: every cu* entry point cudarc can call, each an empty function.
stubs=$cuda/lib/stubs
if [ ! -f "$stubs/libcuda.so" ]; then
    cudarc=$(cargo metadata --format-version 1 --locked --features cuda --filter-platform x86_64-unknown-linux-gnu |
        python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')
    mkdir -p "$stubs"
    grep -oE 'load::<_F>\("cu[A-Za-z0-9_]+"\)' "$(dirname "$cudarc")/src/driver/sys/mod.rs" |
        sed -E 's/.*"(cu[A-Za-z0-9_]+)".*/void \1(void) {}/' | sort -u >"$stubs/libcuda.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/libcuda.c"
fi

export CUDA_PATH=$cuda
export PATH=$cuda/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
if [ $# -gt 0 ]; then
    exec cargo "$@"
fi
cargo build --release --locked --features cuda --target-dir target/cuda --bin sweep >&2
echo "$PWD/target/cuda/release/sweep"
