#!/usr/bin/env bash
# Rebuild .whl/, the wheels a device call carries (the lent GPU machines have no bitsandbytes, torchao or the
# nvidia-ml-py the campaign pins, and reach no package index): download them for the device's Python and
# platform, then slim bitsandbytes to the CUDA 13.0 library the device's torch loads, so the repository plus the
# wheels stay under the tool's 64 MiB carry limit. A fresh checkout lacks .whl/ (it is git-ignored).
#   bash scripts/fetch_device_wheels.sh            # -> .whl/ (about 11 MB)
# The versions are those every campaign session recorded in raw/*/pip-versions.txt
# (tests/scripts/test_fetch_device_wheels.py checks that they still agree).
set -euo pipefail
cd "$(dirname "$0")/.."
BITSANDBYTES=0.50.2
TORCHAO=0.18.0
NVIDIA_ML_PY=13.615.71
DEST=${DEST:-.whl}
mkdir -p "$DEST"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 -d "$DEST" \
  "bitsandbytes==$BITSANDBYTES" "torchao==$TORCHAO" "nvidia-ml-py==$NVIDIA_ML_PY"
python3 scripts/slim_wheel.py "$DEST"/bitsandbytes-"$BITSANDBYTES"-*.whl \
  --drop 'bitsandbytes/libbitsandbytes_rocm*' --drop 'bitsandbytes/libbitsandbytes_cuda1[12]*'
du -sh "$DEST"
