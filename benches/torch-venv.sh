#!/usr/bin/env bash
# Creates .venv-torch with PyTorch from PyPI, for `cargo bench --bench training` to run the
# PyTorch reference beside candle. A few GB of downloads (torch pulls its CUDA libraries even
# where only the CPU is used); not part of the tests. Also Optuna, for benches/optuna_noisy.py
# (the GP sampler's noisy comparison), and the PyTorch pretraining replica benches/mlm_reference.py
# (which needs `tokenizers`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-torch
.venv-torch/bin/pip install --progress-bar off torch numpy optuna scipy greenlet tokenizers
.venv-torch/bin/python -c "import torch; print('torch', torch.__version__)"
