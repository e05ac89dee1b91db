#!/usr/bin/env bash
# Here, before the GPU plan's device call (tools/gpu_plan.sh says how to call it): copy MNIST's four
# .gz archives from ../shared/data/MNIST/raw into .data/MNIST/raw/ (git-ignored; the call names it in
# `carry`), then check that they unpack to the md5s ../shared/README.md lists, that .data is ignored
# and that the tree that travels stays under the device tool's 64 MiB.
#
#     bash tools/gpu_prepare.sh [SOURCE_RAW_FOLDER]
#     XZ=1 bash tools/gpu_prepare.sh     # recompress as .xz (9.2 MB instead of 11.4) if the tree is too big
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-../shared/data/MNIST/raw}"
dest=.data/MNIST/raw
mkdir -p "$dest"
# Only the archives travel; the plan unpacks them there. Unpacked copies would travel too (55 MB).
rm -f "$dest"/*-ubyte "$dest"/*.part "$dest"/*.gz "$dest"/*.xz
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ "${XZ:-0}" = 1 ]; then
    gunzip -c "$src/$name.gz" | xz -9e -T2 >"$dest/$name.xz"
  else
    cp -f "$src/$name.gz" "$dest/$name.gz"
    chmod u+w "$dest/$name.gz"
  fi
done
exec "${PYTHON:-.venv/bin/python}" tools/gpu_plan.py preflight
