#!/usr/bin/env bash
# The first run on a GPU machine: bf16 inference (torch.compile off and on), 2-epoch bf16 training smokes on one
# GPU and on all of them, robustness of the smoke's model on one GPU and on all of them; one JSON + table in OUT
# (default ./gpu_check). Without a GPU: a CPU dry run, exit 0.
#   benchmarks/gpu_check.sh [--out DIR] [--dry-run]
# The logic is timm_assemble/gpu_check.py; exit status 1 when a step failed (see OUT/<step>.log).
exec python -m timm_assemble.gpu_check "$@"
