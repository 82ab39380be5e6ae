"""The emulated Raspberry Pi check: tools/pi/check.sh (see docs/raspberry-pi.md).

Runs from a checkout only: it builds fmnist-edge's wheel from the repository and installs it into
an arm64 Bookworm root filesystem, where fmnist_edge.benchmarks.pi_probe does the guest's work.
"""
