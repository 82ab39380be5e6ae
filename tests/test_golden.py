"""The bundled model on docs/examples, without TensorFlow, against recorded answers: labels, and
every class's score to 1e-6. A changed model, runtime or preprocessing is noticed here.

When the bundled model changes on purpose, record its answers again:

    python tests/test_golden.py --write
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "bundled-examples.json"
MODEL = REPO / "edge_runtime" / "models" / "default.tflite"

# Run in a fresh interpreter in which TensorFlow and Keras cannot be imported, as on a Pi.
CLASSIFY = """
import json, sys
from pathlib import Path
sys.modules["tensorflow"] = None
sys.modules["keras"] = None
from fmnist_edge import Classifier
clf = Classifier(threads=1)
out = {}
for path in sorted(Path(sys.argv[1]).glob("*.png")):
    p = clf.predict(str(path), top_k=10)
    out[path.name] = {"label": p.label, "scores": dict(p.top_k)}
print(json.dumps({"runtime": clf.runtime, "answers": out}))
"""


def classify_examples() -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CLASSIFY, str(REPO / "docs" / "examples")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def model_sha256() -> str:
    return hashlib.sha256(MODEL.read_bytes()).hexdigest()


def test_bundled_model_answers_as_recorded():
    golden = json.loads(GOLDEN.read_text())
    assert golden["model_sha256"] == model_sha256(), (
        "the bundled model changed: check it, then `python tests/test_golden.py --write`"
    )
    got = classify_examples()["answers"]
    assert sorted(got) == sorted(golden["answers"]) and len(got) == 10
    for name, want in golden["answers"].items():
        assert got[name]["label"] == want["label"], name
        assert set(got[name]["scores"]) == set(want["scores"])
        for label, score in want["scores"].items():
            assert abs(got[name]["scores"][label] - score) <= 1e-6, (name, label)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    record = {"model_sha256": model_sha256(), **classify_examples()}
    GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
