#!/usr/bin/env bash
# Here, before the GPU plan's device call (tools/gpu_plan.py says how to call it): copy MNIST's four
# .gz archives from ../shared/data/MNIST/raw into .data/MNIST/raw/ (git-ignored; the call names it in
# `carry`, and the plan unpacks them there), then check their md5s, that .data is ignored, that the
# weights to fine-tune are there and that the tree that travels stays under the device tool's 64 MiB.
#
#     bash tools/gpu_prepare.sh [SOURCE_RAW_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-../shared/data/MNIST/raw}"
dest=.data/MNIST/raw
mkdir -p "$dest"
rm -f "$dest"/*  # unpacked copies would travel too (55 MB)
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  cp -f "$src/$name.gz" "$dest/$name.gz"
  chmod u+w "$dest/$name.gz"
done
exec "${PYTHON:-.venv/bin/python}" tools/gpu_plan.py preflight
