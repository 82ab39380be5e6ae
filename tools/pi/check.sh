#!/usr/bin/env bash
# fmnist-edge on an emulated Raspberry Pi (arm64 Bookworm, Python 3.11) compared with this host:
# fmnist-infer --json and the Python API, ai-edge-litert bit for bit, tflite-runtime within 8 LSB.
# Needs: apt-get install -y qemu-user-static debootstrap proot; pip install -e '.[edge]'.
# Runs from a checkout (it builds the wheel from it); nothing of it is installed.
# The rootfs is cached under ${FMNIST_CACHE:-/var/cache/fmnist-edge}/arm64 (cold: ~9 min).
# Options: tools/pi/check.sh --help. Exit: 0 pass, 1 mismatch, 2 setup error.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python -m tools.pi.cli "$@"
