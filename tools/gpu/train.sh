#!/usr/bin/env bash
# On the lent GPU machine (device tool, carry [".device"], after tools/gpu/prepare.sh here):
# fmnist-train on the JAX backend, one run per argument group, each bounded in time.
#
#   bash tools/gpu/train.sh                                   # the default plan below
#   bash tools/gpu/train.sh "NAME SECONDS fmnist-train options" ...
#
# Each run writes to /tmp/runs/NAME; what comes back in $OUT/NAME/ is the run record and its
# models (model.keras, last.keras, state.json, metrics.json, history.csv): five files, and at
# most 8 come back from one command: one run a call.
# A run stopped by its time limit keeps its last epoch: continue it here with
#   fmnist-train --out runs/NAME --resume
set -euo pipefail
export KERAS_BACKEND=jax FMNIST_DATA="$PWD/.device/data" PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"
python3 -m pip install --quiet --no-index --find-links .device/wheels keras namex optree
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
plans=("$@")
[ ${#plans[@]} -gt 0 ] || plans=(
    "resnet32-edge 540 --recipe edge --arch resnet32"
)
for plan in "${plans[@]}"; do
    read -r name seconds options <<<"$plan"
    echo "== $name: fmnist-train $options (at most $seconds s)"
    # SIGINT, as Ctrl-C: the trainer keeps the last whole epoch and says how to resume
    timeout --signal=INT --kill-after=60 "$seconds" \
        python3 -m fmnist_edge.train.cli $options --out "/tmp/runs/$name" || echo "(exit $?)"
    mkdir -p "$OUT/$name"
    for f in model.keras last.keras state.json metrics.json history.csv; do
        [ -f "/tmp/runs/$name/$f" ] && cp "/tmp/runs/$name/$f" "$OUT/$name/"
    done
    tail -n 3 "/tmp/runs/$name/history.csv" 2>/dev/null || true
done
ls -la "$OUT"/*
