#!/usr/bin/env bash
# timm's own model tests, unmodified, on every Assemble-ResNet: the check a timm plugin is expected to pass.
# Usage: .ci/timm_model_tests.sh PATH_TO_TIMM_CHECKOUT [extra pytest args]
# (git clone https://github.com/huggingface/pytorch-image-models; best at the tag of the installed timm).
# Runs in the current environment (timm_assemble importable, torchvision installed for FX feature extraction).
# Deselected: the tests that need the network or published weights (load_pretrained, features_pretrained) and
# the inference tests against timm's stored outputs. Not part of .ci/run: CI cannot reach GitHub.
set -euo pipefail
timm_repo="$(cd "${1:?usage: $0 PATH_TO_TIMM_CHECKOUT [pytest args]}" && pwd)"
shift
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/tests"
cp "$timm_repo/tests/test_models.py" "$work/tests/"
touch "$work/tests/__init__.py"
echo "import timm_assemble  # noqa: F401  (registers the models with timm)" > "$work/tests/conftest.py"
cd "$work"
python -m pytest -q -p no:cacheprovider tests/test_models.py \
    -k "assemble and not load_pretrained and not features_pretrained and not inference" "$@"
