"""The edge runtime on an emulated Raspberry Pi (arm64 Debian bookworm, Python 3.11, Cortex-A72
or A76), compared with the host.

    tools/pi/check.sh [--model M.tflite] [--cpu pi4|pi5]   # the command: tools/pi/cli.py

1. a cached arm64 rootfs (rootfs.py); 2. aarch64 wheels downloaded by pip on the host, and
fmnist-edge built from this checkout, installed by the guest's pip into one venv per runtime (no
TensorFlow anywhere); 3. for each runtime, ``fmnist-infer --json`` and the Python API
(fmnist_edge.benchmarks.pi_probe) on 200+ official test images and a few photo-mode JPEGs; 4.
the same on the host with ai-edge-litert. Every label must agree, and fmnist-infer must print
what the API returns. ai-edge-litert's int8 output tensors, the logits (fmnist-export leaves the
softmax to the runtime), must be bit-identical; tflite-runtime 2.14's (numpy < 2) within 8 LSB
(TFLite's kernels, not XNNPACK). A model exported with --keep-softmax is held to the same on its
logits, and its int8 softmax outputs to what that implies (pi_probe.softmax_bound): TFLite's
int8 softmax kernel has its own NEON path and rounds differently from x86 in rare cases.

Emulated timings say nothing about a Pi's speed; only the phases' wall times are reported.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fmnist_edge.benchmarks import pi_probe as probe
from fmnist_edge.common.errors import FmnistError, ModelError, UsageError
from fmnist_edge.common.nativelog import SHOW_NATIVE_LOG

from .rootfs import (
    PI_CPUS,
    EmulationError,
    check_host_tools,
    cpuinfo_text,
    ensure_rootfs,
    guest_command,
    run_process,
    safe_rmtree,
)
from .wheels import (
    REPO,
    build_project_wheel,
    download_wheels,
    host_venv,
    host_versions,
    installed_tensorflow,
    requirements,
    serve_requirements,
)

RUNTIMES = ("ai-edge-litert", "tflite-runtime")
# How far the Pi's int8 logits may be from the same runtime's on the host: ai-edge-litert
# (XNNPACK) bit-identical; tflite-runtime 2.14 (TFLite's builtin kernels, with their own NEON
# and x86 code paths) within 8 LSB. Those kernels round each requantization a little
# differently on the two CPUs and the differences add up with depth: 1 LSB for edge-m (11
# convolutions), up to 4-5 LSB for resnet20 (21 convolutions, 9 residual adds; 994 and 971 of
# 2,640 values differ at epochs 120 and 160); 8 leaves room for other images, while a wrong
# kernel is still caught.
# The softmax outputs' bound follows from these (pi_probe.softmax_bound), and labels may
# differ only at such a near-tie of the logits.
LOGITS_LSB = {"ai-edge-litert": 0, "tflite-runtime": 8}
INFO_KEYS = ("machine", "cpu", "hwcap", "python", "numpy", "pillow", "runtime", "model")


def default_cache_dir() -> Path:
    return Path(os.environ.get("FMNIST_CACHE", "/var/cache/fmnist-edge")) / "arm64"


@dataclass(frozen=True)
class Arm64Config:
    """Settings of one emulated-Pi check."""

    model: Path | None = None  # the .tflite to check; None: the bundled default.tflite
    cpu: str = "pi4"  # "pi4" (QEMU_CPU=cortex-a72) or "pi5" (cortex-a76)
    images: int = 256  # official test images, 28x28 PNGs (raw mode)
    photos: int = 8  # of those, also written as photo-mode JPEGs
    runtimes: tuple[str, ...] = RUNTIMES  # runtimes installed and run on the emulated Pi
    cache_dir: Path = field(default_factory=default_cache_dir)  # rootfs tarball, wheels
    data_dir: str | None = None  # Fashion-MNIST files (else fmnist_edge.dataset.files's search)
    mirror: str = "http://deb.debian.org/debian"  # for debootstrap
    keep: bool = False  # keep the work directory (venvs, images, outputs) afterwards
    report: Path | None = None  # also write the summary as JSON here
    timeout_s: int = 1800  # per emulated command

    def __post_init__(self) -> None:
        if self.cpu not in PI_CPUS:
            raise UsageError(f"--cpu must be one of {', '.join(PI_CPUS)} (got {self.cpu!r})")
        if self.images < 1 or self.photos < 0:
            raise UsageError("--images must be >= 1 and --photos >= 0")
        unknown = set(self.runtimes) - set(RUNTIMES)
        if unknown or not self.runtimes:
            raise UsageError(f"--runtime must be among {', '.join(RUNTIMES)}")


@dataclass
class Arm64Result:
    """What the check found: comparisons, environment checks and phase times."""

    config: dict
    images: int = 0  # images classified on each side
    host: dict = field(default_factory=dict)  # runtime -> versions, cpu (the references)
    guest: dict = field(default_factory=dict)  # runtime -> versions, cpu, hwcap, xnnpack
    agreements: list[probe.Agreement] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (what, ok, detail)
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall seconds
    notes: list[str] = field(default_factory=list)  # for information, not pass/fail

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.agreements) and all(ok for _, ok, _ in self.checks)

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "ok": self.ok,
            "agreements": [{**asdict(a), "ok": a.ok} for a in self.agreements],
        }


class _Phases:
    """Wall time per named phase, into ``result.seconds``."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds, self.name, self.start = seconds, "", 0.0

    def __call__(self, name: str) -> _Phases:
        self.name = name
        return self

    def __enter__(self) -> None:
        print(f"[arm64] {self.name} ...", flush=True)
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self.name] = round(time.perf_counter() - self.start, 1)


# --- running each side -----------------------------------------------------------------------


class Guest:
    """Runs commands on the emulated Pi. The work directory and the wheels appear at their host
    paths: Debian's proot 5.1 does not translate paths in faccessat2 and statx, which qemu uses,
    so a file bound elsewhere would look missing to os.access (and to click's Path checks)."""

    def __init__(self, rootfs: Path, work: Path, wheels: dict[str, Path], cpu: str, timeout: int):
        self.rootfs, self.cpu, self.timeout = rootfs, PI_CPUS[cpu], timeout
        (work / "cpuinfo").write_text(cpuinfo_text(self.cpu, os.cpu_count() or 4))
        self.work = work
        self.binds = [(work, str(work)), (work / "cpuinfo", "/proc/cpuinfo")]
        self.binds += [(path, str(path)) for path in wheels.values()]
        self.host_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QEMU_CPU": self.cpu.qemu}

    def run(self, argv: list[str], venv: str | None = None, cwd: Path | None = None):
        path = (f"{self.work}/{venv}/bin:" if venv else "") + "/usr/local/bin:/usr/bin:/bin"
        env = {
            "PATH": path,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "QEMU_CPU": self.cpu.qemu,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PIP_NO_CACHE_DIR": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            SHOW_NATIVE_LOG: "1",  # LiteRT's XNNPACK line proves the delegate is on
        }
        proc = run_process(
            guest_command(self.rootfs, argv, env, self.binds, str(cwd or self.work)),
            env=self.host_env,
            timeout=self.timeout,
        )
        if proc.returncode:
            raise EmulationError(
                f"emulated `{' '.join(argv[:4])} ...` exited {proc.returncode}: "
                + _tail(proc.stderr)
            )
        return proc


def _tail(stderr: bytes, lines: int = 3) -> str:
    return " | ".join(stderr.decode(errors="replace").strip().splitlines()[-lines:])


def _host(argv: list[str], cwd: Path, timeout: int, python: str = sys.executable):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", SHOW_NATIVE_LOG: "1"}
    proc = run_process([python, *argv], env=env, cwd=cwd, timeout=timeout)
    if proc.returncode:
        raise FmnistError(
            f"host `{' '.join(argv[:3])} ...` exited {proc.returncode}: " + _tail(proc.stderr)
        )
    return proc


def _probe_args(work: Path, out: Path, runtime: str, model: list[str]) -> list[str]:
    images = str(work / "images")
    return [
        "-m",
        "fmnist_edge.benchmarks.pi_probe",
        "classify",
        images,
        str(out),
        "--runtime",
        runtime,
        *model,
    ]


def _run_host(work: Path, model: list[str], timeout: int) -> tuple[dict, dict, bytes]:
    """The reference: fmnist-infer --json and the probe on the host with ai-edge-litert."""
    cli = [
        "-c",
        "from fmnist_edge.edge_runtime.cli import main; main()",
        "--json",
        "--runtime",
        "ai-edge-litert",
        *model,
        *probe.IMAGE_DIRS,
    ]
    records = probe.read_json_lines(_host(cli, work / "images", timeout).stdout.decode())
    proc = _host(_probe_args(work, work / "host.json", "ai-edge-litert", model), work, timeout)
    return records, json.loads((work / "host.json").read_text()), proc.stderr


def _run_guest(
    guest: Guest,
    work: Path,
    rt: str,
    reqs: list[str],
    wheels: list[Path],
    model: list[str],
    phase: _Phases,
) -> tuple[dict, dict, bytes]:
    """Install ``rt`` the way a Pi user would, in a fresh venv, then the same two runs.
    ai-edge-litert's venv gets the [serve] extra too (fmnist-serve; [edge] is part of it)."""
    venv = work / f"venv-{rt}"
    with phase(f"guest install {rt}"):
        guest.run(["python3", "-m", "venv", "--without-pip", str(venv)])
        project = "fmnist-edge[serve]" if rt == "ai-edge-litert" else "fmnist-edge"
        links = [arg for path in [*wheels, work / "dist"] for arg in ("--find-links", str(path))]
        guest.run(
            [
                "python3",
                "-m",
                "pip",
                "--python",
                str(venv / "bin" / "python"),
                "install",
                "-q",
                "--no-index",
                *links,
                project,
                *reqs,
            ]
        )
    with phase(f"guest fmnist-infer {rt}"):
        proc = guest.run(
            ["fmnist-infer", "--json", "--runtime", rt, *model, *probe.IMAGE_DIRS],
            venv=venv.name,
            cwd=work / "images",
        )
        records = probe.read_json_lines(proc.stdout.decode())
    with phase(f"guest Python API {rt}"):
        out = work / f"{rt}.json"
        proc = guest.run(["python", *_probe_args(work, out, rt, model)], venv=venv.name)
    return records, json.loads(out.read_text()), proc.stderr


def _compare(rt: str, ref: dict, cli: dict, api: dict) -> list[probe.Agreement]:
    """fmnist-infer = Python API on the Pi; logits, int8 outputs and labels against ``ref``,
    the same runtime on the host."""
    found = [probe.compare_cli(f"{rt}: fmnist-infer = API (Pi)", cli, api)]
    lsb = LOGITS_LSB[rt]
    if ref.get("output_values") == "logits":  # the default export: the output is the logits
        out = probe.compare_tensors(f"{rt}: int8 logits (the output)", ref, api, "logits", lsb, lsb)
        return [*found, out]
    bound = probe.softmax_bound(lsb, ref["logits_scale"], ref["output_scale"])
    return [
        *found,
        probe.compare_tensors(f"{rt}: int8 logits", ref, api, "logits", lsb, lsb),
        probe.compare_tensors(f"{rt}: int8 softmax outputs", ref, api, "outputs", bound, lsb),
    ]


def _host_tflite(cfg: Arm64Config, work: Path, reqs: list[str], model: list[str], log: Path):
    """tflite-runtime's reference run on the host, from its x86_64 wheels in a venv."""
    wheels = download_wheels(cfg.cache_dir, "host-tflite-runtime", reqs, log, arm64=False)
    python = host_venv(work / "host-venv-tflite-runtime", wheels, reqs, log)
    out = work / "host-tflite-runtime.json"
    _host(_probe_args(work, out, "tflite-runtime", model), work, cfg.timeout_s, str(python))
    return json.loads(out.read_text())


def run_check(cfg: Arm64Config) -> Arm64Result:
    """Build or reuse the emulated Pi, run everything on both sides, compare."""
    check_host_tools()
    versions = host_versions()
    cpu = PI_CPUS[cfg.cpu]
    result = Arm64Result(config={k: str(v) for k, v in asdict(cfg).items()})
    phase = _Phases(result.seconds)
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    log = cfg.cache_dir / "last-run.log"
    log.write_text("")
    work = Path(tempfile.mkdtemp(prefix="run-", dir=cfg.cache_dir))
    try:
        host_model, guest_model = _model_args(cfg, work)  # fail early on a missing model
        with phase("rootfs"):
            rootfs = ensure_rootfs(cfg.cache_dir, cfg.mirror, log)
        with phase("wheels"):
            reqs = {rt: requirements(rt, versions) for rt in cfg.runtimes}
            wheels = {rt: download_wheels(cfg.cache_dir, rt, reqs[rt], log) for rt in reqs}
            if "ai-edge-litert" in wheels:  # its venv also gets fmnist-serve
                wheels["serve"] = download_wheels(cfg.cache_dir, "serve", serve_requirements(), log)
            build_project_wheel(work, log)
        with phase("images"):
            n_images = probe.write_images(work / "images", cfg.images, cfg.photos, cfg.data_dir)
        with phase("host"):
            host_cli, host, stderr = _run_host(work, host_model, cfg.timeout_s)
        refs = {"ai-edge-litert": host}
        if "tflite-runtime" in cfg.runtimes:
            with phase("host tflite-runtime"):
                refs["tflite-runtime"] = _host_tflite(
                    cfg, work, reqs["tflite-runtime"], host_model, log
                )
        result.images = n_images
        result.agreements.append(probe.compare_cli("host: fmnist-infer = API", host_cli, host))
        result.checks.append(("host: XNNPACK delegate on", b"XNNPACK" in stderr, ""))
        result.host = {rt: {k: ref[k] for k in INFO_KEYS} for rt, ref in refs.items()}
        guest = Guest(rootfs, work, wheels, cfg.cpu, cfg.timeout_s)
        for rt in cfg.runtimes:
            links = [wheels[rt], *([wheels["serve"]] if rt == "ai-edge-litert" else [])]
            cli, api, stderr = _run_guest(guest, work, rt, reqs[rt], links, guest_model, phase)
            result.guest[rt] = {k: api[k] for k in INFO_KEYS} | {"xnnpack": b"XNNPACK" in stderr}
            result.agreements += _compare(rt, refs[rt], cli, api)
            if rt != "ai-edge-litert":  # for information: runtimes differ, on x86 too
                pi, x86 = probe.label_agreement(host, api), probe.label_agreement(host, refs[rt])
                result.notes.append(
                    f"{rt} vs ai-edge-litert, labels: {pi[0]}/{pi[1]} agree on the Pi, "
                    f"{x86[0]}/{x86[1]} on the host (a runtime difference, not the Pi's)"
                )
            result.checks += _guest_checks(rt, api, host, stderr, cpu)
            if rt == "ai-edge-litert":
                with phase("guest fmnist-serve"):
                    result.checks.append(_serve_check(guest, work, host, guest_model))
        with phase("scan for TensorFlow"):
            libs = [
                rootfs / "usr" / "lib",
                rootfs / "usr" / "local" / "lib",
                *sorted(work.glob("venv-*/lib")),
            ]
            found = installed_tensorflow(libs)
        result.checks.append(("no TensorFlow in the rootfs or venvs", not found, ", ".join(found)))
    finally:
        if cfg.keep:
            print(f"[arm64] kept {work}")
        else:
            safe_rmtree(work)
    return result


def _serve_check(guest: Guest, work: Path, host: dict, model: list[str]) -> tuple:
    """fmnist-serve in the ai-edge-litert venv on the Pi: one image over HTTP on loopback gets
    the host's label, /healthz answers, SIGTERM stops it with exit status 0, and the [serve]
    extra's httptools parses HTTP there."""
    path = next(p for p in host["paths"] if p.startswith("raw/"))
    out = work / "serve.json"
    argv = ["python", "-m", "fmnist_edge.benchmarks.pi_probe", "serve", str(work / "images" / path)]
    guest.run([*argv, str(out), *model], venv="venv-ai-edge-litert")
    got = json.loads(out.read_text())
    expected = host["labels"][host["paths"].index(path)]
    ok = got["label"] == expected and got["healthz"] == "ok" and got["exit_code"] == 0
    ok = ok and got.get("http_parser") == "httptools"
    detail = (
        f"{got['label']} vs {expected}, healthz {got['healthz']}, exit {got['exit_code']}, "
        f"parser {got.get('http_parser')}"
    )
    return ("ai-edge-litert: fmnist-serve over HTTP gives the host's label", ok, detail)


def _model_args(cfg: Arm64Config, work: Path) -> tuple[list[str], list[str]]:
    """--model for the host and for the guest; none for the bundled model, which the guest
    then reads from the installed wheel (package data included)."""
    if cfg.model is None:
        if not (REPO / "edge_runtime" / "models" / "default.tflite").is_file():
            raise ModelError("no bundled model (edge_runtime/models/default.tflite): pass --model")
        return [], []
    if not cfg.model.is_file():
        raise ModelError(f"{cfg.model}: model file not found")
    shutil.copy2(cfg.model, work / "model.tflite")
    return ["--model", str(cfg.model.resolve())], ["--model", str(work / "model.tflite")]


def _guest_checks(rt: str, api: dict, host: dict, stderr: bytes, cpu) -> list:
    expected = {name: name in cpu.hwcaps for name in probe.HWCAP_BITS}
    checks = [
        (
            f"{rt}: guest is aarch64 Python 3.11",
            api["machine"] == "aarch64" and api["python"].startswith("3.11."),
            f"{api['machine']} {api['python']}",
        ),
        (f"{rt}: guest sees the Pi's /proc/cpuinfo", api["cpu"] == cpu.model, api["cpu"]),
        (f"{rt}: QEMU emulates {cpu.qemu} (hwcaps)", api["hwcap"] == expected, str(api["hwcap"])),
        (f"{rt}: TensorFlow not importable", not api["tensorflow_importable"], ""),
    ]
    if rt == "ai-edge-litert":
        checks += [
            (
                f"{rt}: same version as the host",
                api["runtime"] == host["runtime"],
                f"{api['runtime']} vs {host['runtime']}",
            ),
            (f"{rt}: XNNPACK delegate on", b"XNNPACK" in stderr, ""),
        ]
    return checks


# --- report and command line -----------------------------------------------------------------


def summary(result: Arm64Result) -> str:
    cpu = PI_CPUS[result.config["cpu"]]
    model = next(iter(result.host.values()), {}).get("model")
    lines = [f"emulated {cpu.model} (QEMU_CPU={cpu.qemu}), model {model}, {result.images} images"]
    for side, infos in (("host ", result.host), ("guest", result.guest)):
        lines += [
            f"  {side} {i['machine']} Python {i['python']} {i['runtime']} numpy {i['numpy']} "
            f"Pillow {i['pillow']}"
            for i in infos.values()
        ]
    lines += ["comparisons (each runtime on the Pi against the same runtime on the host):"]
    lines += ["  " + a.line() for a in result.agreements]
    lines += [f"  note: {note}" for note in result.notes]
    lines += ["environment:"]
    lines += [
        f"  {'ok ' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail and not ok else "")
        for what, ok, detail in result.checks
    ]
    total = sum(result.seconds.values())
    lines += [f"phases (wall seconds, {total:.0f} s in all; emulated, not Pi speed):"]
    lines += [f"  {name:32s} {sec:7.1f}" for name, sec in result.seconds.items()]
    lines += ["PASS" if result.ok else "FAIL: a mismatch or a failed environment check above"]
    return "\n".join(lines)
