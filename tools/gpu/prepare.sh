#!/usr/bin/env bash
# Here, before a GPU run: put into .device/ (git-ignored) what the lent GPU machine lacks.
# It has JAX, numpy, click, pillow, h5py, rich and Python 3.12, but no TensorFlow, no Keras and
# no network: Keras and its two missing dependencies travel as wheels, Fashion-MNIST as its
# four IDX files (from Debian's dataset-fashion-mnist, or FMNIST_DATA).
#
#   bash tools/gpu/prepare.sh
#   then, through the device tool:  bash tools/gpu/train.sh   (carry: [".device"])
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${FMNIST_DATA:-/usr/share/datasets/fashion-mnist}"
keras_version="$(python -c 'from importlib.metadata import version; print(version("keras"))')"
mkdir -p .device/wheels .device/data
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    cp "$data/$f.gz" .device/data/ 2>/dev/null || cp "$data/$f" .device/data/
done
pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    -d .device/wheels "keras==$keras_version" namex optree
du -sh .device
