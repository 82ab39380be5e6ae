"""The emulated-Pi check's own logic, fast. The full check (minutes) is tools/pi/check.sh;
the one test that enters the cached arm64 rootfs skips when it or the host tools are missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist_edge.benchmarks import pi_probe

# tools/ runs from a checkout and is never installed: import it from this one
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.pi import check, rootfs  # noqa: E402

NAMES = {"Bag": 8, "Coat": 4, "Shirt": 6}


def _runs(ref_labels, other_labels, ref_out, other_out):
    ref = {
        "paths": ["a", "b"],
        "labels": ref_labels,
        "outputs": ref_out,
        "indices": [NAMES[n] for n in ref_labels],
    }
    other = {
        "paths": ["a", "b"],
        "labels": other_labels,
        "outputs": other_out,
        "indices": [NAMES[n] for n in other_labels],
    }
    return ref, other


def test_compare_tensors_bit_identical_and_one_lsb():
    ref, other = _runs(["Bag", "Coat"], ["Bag", "Coat"], [[-128, 90], [5, 7]], [[-128, 90], [5, 7]])
    exact = pi_probe.compare_tensors("x", ref, other, "outputs", allowed_lsb=0)
    assert exact.ok and exact.max_lsb == 0 and exact.compared == 2

    ref, other = _runs(["Bag", "Coat"], ["Bag", "Coat"], [[-128, 90], [5, 7]], [[-127, 90], [5, 7]])
    assert not pi_probe.compare_tensors("x", ref, other, "outputs", allowed_lsb=0).ok
    one = pi_probe.compare_tensors("x", ref, other, "outputs", allowed_lsb=1)
    assert one.ok and one.max_lsb == 1 and one.differing == 1


def test_compare_tensors_fails_on_a_label_a_missing_tensor_or_another_image_set():
    ref, other = _runs(["Bag", "Coat"], ["Bag", "Shirt"], [[0, 1], [2, 3]], [[0, 1], [2, 3]])
    assert not pi_probe.compare_tensors("x", ref, other, "outputs", allowed_lsb=1).ok
    ref, other = _runs(["Bag", "Coat"], ["Bag", "Coat"], [[0, 1], [2, 3]], [[0, 1], [2, 3]])
    assert not pi_probe.compare_tensors("x", ref, other, "logits", allowed_lsb=1).ok
    other["paths"] = ["a", "c"]
    assert not pi_probe.compare_tensors("x", ref, other, "outputs", allowed_lsb=1).ok


def test_a_label_may_differ_only_at_a_near_tie_of_the_reference_logits():
    ref, other = _runs(["Bag", "Coat"], ["Bag", "Shirt"], [[0] * 10] * 2, [[0] * 10] * 2)
    logits = [0] * 10
    logits[4], logits[6] = 20, 18  # Coat ahead of Shirt by 2 LSB
    ref["logits"] = other["logits"] = [[0] * 10, logits]
    within = pi_probe.compare_tensors("x", ref, other, "logits", 1, logits_lsb=1)
    assert within.ok and within.labels_agree == 1 and within.near_ties == 1
    exact = pi_probe.compare_tensors("x", ref, other, "logits", 0, logits_lsb=0)
    assert not exact.ok and exact.near_ties == 0
    logits[4] = 21  # 3 LSB: two logits each 1 LSB off cannot swap them
    assert not pi_probe.compare_tensors("x", ref, other, "logits", 1, logits_lsb=1).ok


def test_compare_cli_with_the_api_needs_same_labels_and_printed_scores():
    api = {"paths": ["raw/a.png"], "labels": ["Bag"], "scores": [0.50390625]}
    rec = {"path": "raw/a.png", "label": "Bag", "index": 8, "score": 0.503906, "top_k": []}
    assert pi_probe.compare_cli("x", {"raw/a.png": rec}, api).ok
    assert not pi_probe.compare_cli("x", {"raw/a.png": {**rec, "score": 0.5}}, api).ok
    assert not pi_probe.compare_cli("x", {"raw/a.png": {**rec, "label": "Coat"}}, api).ok
    failed = {"raw/a.png": {"path": "raw/a.png", "error": "corrupt"}}
    assert not pi_probe.compare_cli("x", failed, api).ok
    assert not pi_probe.compare_cli("x", {}, api).ok


def test_read_json_lines_keys_records_by_path():
    text = '{"path": "raw/a.png", "label": "Bag"}\n\n{"path": "raw/b.png", "label": "Coat"}\n'
    assert list(pi_probe.read_json_lines(text)) == ["raw/a.png", "raw/b.png"]


@pytest.mark.parametrize(
    ("lsb", "logits_scale", "bound"),
    [(0, 0.1, 1), (1, 2 / 256, 2), (1, 0.0625, 9), (2, 0.0625, 17)],
)
def test_softmax_bound(lsb, logits_scale, bound):
    # |dp| <= lsb * scale / 2, in output LSBs of 1/256, plus one for rounding
    assert pi_probe.softmax_bound(lsb, logits_scale, 1 / 256) == bound


def test_test_indices_are_fixed_spread_and_sized():
    idx = pi_probe.test_indices(10_000, 256)
    assert len(idx) == 256 and idx[0] == 0 and idx[-1] == 9_999
    assert idx == pi_probe.test_indices(10_000, 256)
    assert pi_probe.test_indices(5, 256) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("cpu", sorted(rootfs.PI_CPUS))
def test_cpuinfo_looks_like_a_pi(cpu):
    spec = rootfs.PI_CPUS[cpu]
    text = rootfs.cpuinfo_text(spec, cores=3)
    assert text.count("processor\t:") == 3
    assert "CPU implementer\t: 0x41" in text and f"CPU part\t: {spec.part}" in text
    assert text.rstrip().endswith(f"Model\t\t: {spec.model}")
    assert set(spec.hwcaps) <= set(pi_probe.HWCAP_BITS)


def test_requirements_pin_the_host_versions():
    versions = {"ai-edge-litert": "2.3.0", "numpy": "2.4.6", "pillow": "13.0.0", "click": "8.4.0"}
    litert = check.requirements("ai-edge-litert", versions)
    assert "ai-edge-litert==2.3.0" in litert and "numpy==2.4.6" in litert
    tflite = check.requirements("tflite-runtime", versions)
    assert "tflite-runtime==2.14.0" in tflite and "numpy<2" in tflite
    assert "pillow==13.0.0" in litert and "pillow==13.0.0" in tflite


def test_config_rejects_unknown_cpu_and_runtime():
    with pytest.raises(check.UsageError, match="--cpu"):
        check.Arm64Config(cpu="pi3")
    with pytest.raises(check.UsageError, match="--runtime"):
        check.Arm64Config(runtimes=("tensorflow",))


def test_safe_rmtree_refuses_a_directory_with_mounts_inside(tmp_path, monkeypatch):
    (tmp_path / "rootfs" / "dev").mkdir(parents=True)
    monkeypatch.setattr(rootfs, "mounts_under", lambda path: [f"{path}/dev"])
    with pytest.raises(rootfs.EmulationError, match="mounts inside"):
        rootfs.safe_rmtree(tmp_path / "rootfs")
    assert (tmp_path / "rootfs" / "dev").is_dir()
    monkeypatch.undo()
    rootfs.safe_rmtree(tmp_path / "rootfs")
    assert not (tmp_path / "rootfs").exists()


def test_mounts_under_sees_real_mount_points():
    assert "/proc" in rootfs.mounts_under(rootfs.Path("/proc"))


def _cached_rootfs():
    cache = check.default_cache_dir()
    root = cache / f"rootfs-{rootfs.cache_key()}"
    if not (root / rootfs.STAMP).is_file():
        pytest.skip(f"no cached arm64 rootfs in {cache} (tools/pi/check.sh builds it)")
    if any(shutil.which(t) is None for t in ("proot", "qemu-aarch64-static")):
        pytest.skip("proot or qemu-user-static not installed")
    return root


def test_guest_is_an_arm64_pi_with_python_311(tmp_path):
    root = _cached_rootfs()
    spec = rootfs.PI_CPUS["pi4"]
    (tmp_path / "cpuinfo").write_text(rootfs.cpuinfo_text(spec, 2))
    code = "import platform; print(platform.machine(), platform.python_version())"
    cmd = rootfs.guest_command(
        root,
        ["python3", "-c", code + "; print(open('/proc/cpuinfo').read().split()[-1])"],
        {"PATH": "/usr/bin:/bin", "QEMU_CPU": spec.qemu},
        binds=[(tmp_path / "cpuinfo", "/proc/cpuinfo")],
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    machine, version, last = out.split()
    assert machine == "aarch64" and version.startswith("3.11.") and last == "1.5"


def test_cli_refuses_a_missing_model_before_building_anything(tmp_path):
    from click.testing import CliRunner

    from tools.pi.cli import main

    cache = tmp_path / "cache"
    result = CliRunner().invoke(
        main, ["--model", str(tmp_path / "no.tflite"), "--cache-dir", str(cache)]
    )
    assert result.exit_code == 2
    assert "model file not found" in result.output or "missing host tools" in result.output
    assert not list(cache.glob("run-*")) and not list(cache.glob("rootfs-*"))


def test_cli_rejects_an_unknown_cpu():
    from click.testing import CliRunner

    from tools.pi.cli import main

    result = CliRunner().invoke(main, ["--cpu", "pi3"])
    assert result.exit_code == 2 and "pi3" in result.output


@pytest.mark.parametrize("key", ["int8", "int8-softmax"])
def test_probe_classifies_on_the_host_and_compares_like_with_like(tmp_path, tiny_tflite, key):
    """The probe's host run on real test images: the default export's output tensor is the
    logits, compared directly; a --keep-softmax file's logits are read from inside the graph."""
    from tools.pi.check import _compare

    assert pi_probe.write_images(tmp_path, count=12, photos=2) == 14
    run = pi_probe.classify(tmp_path, str(tiny_tflite[key]), "ai-edge-litert")
    assert len(run["paths"]) == len(run["outputs"]) == len(run["logits"]) == 14
    assert run["output_dtype"] == "int8" and run["tensorflow_importable"] is True
    if key == "int8":
        assert run["output_values"] == "logits" and run["logits"] == run["outputs"]
    else:
        assert run["output_values"] == "probabilities" and run["logits"] != run["outputs"]
        assert run["logits_scale"] > 0
    logits = np.asarray(run["logits"])
    assert run["indices"] == logits.argmax(axis=1).tolist()  # labels follow the logits
    cli = {p: {"label": lab, "score": round(s, 6)} for p, lab, s in
           zip(run["paths"], run["labels"], run["scores"], strict=True)}
    found = _compare("ai-edge-litert", run, cli, run)
    assert all(a.ok for a in found)
    assert [a.name.split(": ", 1)[1] for a in found[1:]] == (
        ["int8 logits (the output)"] if key == "int8" else ["int8 logits", "int8 softmax outputs"]
    )
