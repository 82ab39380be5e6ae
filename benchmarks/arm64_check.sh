#!/usr/bin/env bash
# fmnist-edge on an emulated Raspberry Pi (arm64 Bookworm, Python 3.11) compared with this host:
# fmnist-infer --json and the Python API, ai-edge-litert bit for bit, tflite-runtime within 1 LSB.
# Needs: apt-get install -y qemu-user-static debootstrap proot; pip install -e '.[edge]'.
# The rootfs is cached under ${FMNIST_CACHE:-/var/cache/fmnist-edge}/arm64 (cold: ~9 min).
# Options: benchmarks/arm64_check.sh --help. Exit: 0 pass, 1 mismatch, 2 setup error.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m benchmarks.arm64_cli "$@"
