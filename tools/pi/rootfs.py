"""An emulated Raspberry Pi on an x86_64 host: a cached arm64 Debian bookworm rootfs, entered
with proot and qemu-user. Nothing here touches the host beyond the cache directory:

- no binfmt_misc registration: proot runs every guest program through qemu-aarch64-static;
- no bind mounts: proot's ``-b`` binds are path translations inside its own process tree, and
  every proot runs in a private mount namespace (``unshare --mount``) where one exists, so a
  guest's own mount/umount calls (debootstrap's second stage makes some) cannot reach the host;
- nothing under a directory is deleted while anything is mounted below it.

QEMU_CPU and a fake /proc/cpuinfo are not optional: with QEMU's default "max" CPU, int8 results
under XNNPACK are wrong, and with the host's x86 cpuinfo LiteRT either crashes or silently skips
XNNPACK (shared/notes/arm64-emulation.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fmnist_edge.common.errors import FmnistError, UsageError

SUITE, ARCH = "bookworm", "arm64"
# Raspberry Pi OS Bookworm's Python base: 3.11.2, with venv and pip. Its Debian numpy and
# Pillow are left out: a venv doesn't see them, pip installs its own wheels, as on a Pi.
PACKAGES = ("python3", "python3-venv", "python3-pip")
HOST_TOOLS = {  # command -> Debian package
    "debootstrap": "debootstrap",
    "proot": "proot",
    "qemu-aarch64-static": "qemu-user-static",
}
STAMP = ".fmnist-edge-rootfs"  # in an extracted rootfs: which tarball it came from


class EmulationError(FmnistError):
    """The emulated Pi could not be built or entered (exit 2: not a result mismatch)."""

    exit_code = 2


@dataclass(frozen=True)
class PiCpu:
    """The CPU to emulate and the /proc/cpuinfo a Pi with it shows."""

    qemu: str  # QEMU_CPU
    part: str  # "CPU part" in /proc/cpuinfo
    variant: str
    revision: int
    features: str
    model: str  # "Model" line
    hwcaps: tuple[str, ...]  # of pi_probe.HWCAP_BITS, those this CPU has


PI_CPUS = {
    "pi4": PiCpu(
        "cortex-a72",
        "0xd08",
        "0x0",
        3,
        "fp asimd evtstrm crc32 cpuid",
        "Raspberry Pi 4 Model B Rev 1.5",
        (),
    ),
    "pi5": PiCpu(
        "cortex-a76",
        "0xd0b",
        "0x4",
        1,
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
        "asimdrdm lrcpc dcpop asimddp",
        "Raspberry Pi 5 Model B Rev 1.0",
        ("atomics", "asimddp"),
    ),
}


def cpuinfo_text(cpu: PiCpu, cores: int) -> str:
    """A Raspberry Pi /proc/cpuinfo with ``cores`` processors (the host's count: the runtime
    also reads the core count from /sys, which stays the host's)."""
    block = (
        "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {f}\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: {v}\nCPU part\t: {p}\nCPU revision\t: {r}\n\n"
    )
    body = "".join(
        block.format(n=n, f=cpu.features, v=cpu.variant, p=cpu.part, r=cpu.revision)
        for n in range(cores)
    )
    return body + f"Revision\t: c03115\nSerial\t\t: 100000000badc0de\nModel\t\t: {cpu.model}\n"


def check_host_tools() -> None:
    missing = [pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise UsageError(f"missing host tools: apt-get install -y {' '.join(sorted(set(missing)))}")


# --- host safety ---------------------------------------------------------------------------


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace."""
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                found.append(point)
    return found


def safe_rmtree(path: Path) -> None:
    """rm -rf, refused while anything is mounted inside (a bound /dev would be the host's)."""
    if not os.path.lexists(path):
        return
    mounted = mounts_under(path)
    if mounted:
        raise EmulationError(f"{path}: not removed, mounts inside it: {', '.join(mounted)}")
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def _has_cap_sys_admin() -> bool:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 21 & 1)
    return True  # unknown: assume the worst


def isolation_prefix() -> list[str]:
    """A private mount namespace for guest commands, so their mount/umount calls stay there.
    Without CAP_SYS_ADMIN the guest cannot mount anything anyway."""
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if shutil.which("unshare"):
        probe = subprocess.run([*unshare, "true"], capture_output=True)
        if probe.returncode == 0:
            return [*unshare, "--"]
    if _has_cap_sys_admin():
        raise EmulationError(
            "unshare --mount failed while this process may mount: refusing to run guest "
            "commands that could unmount the host's /proc"
        )
    return []


# --- entering the rootfs ---------------------------------------------------------------------


def guest_command(
    rootfs: Path,
    argv: Sequence[str],
    env: dict[str, str],
    binds: Sequence[tuple[Path, str]] = (),
    cwd: str = "/",
    system: bool = True,
) -> list[str]:
    """proot + qemu command line running ``argv`` in ``rootfs`` with exactly ``env``.
    ``system`` binds the host's /dev, /proc and /sys (the runtime reads the core count there);
    debootstrap's second stage runs without them."""
    cmd = [*isolation_prefix(), "proot", "-q", "qemu-aarch64-static", "-r", str(rootfs), "-w", cwd]
    if system:
        cmd += ["-b", "/dev", "-b", "/proc", "-b", "/sys"]
    else:
        cmd += ["-0"]  # fake root ids for dpkg (we may not be root)
    for host, guest in binds:
        cmd += ["-b", f"{host}:{guest}"]
    return [*cmd, "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]


def run_process(
    cmd: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: int = 1800,
    stdout: int | IO[bytes] = subprocess.PIPE,
    stderr: int | IO[bytes] = subprocess.PIPE,
) -> subprocess.CompletedProcess:
    """subprocess.run in its own process group, which is killed whole on a timeout or an
    interrupt: proot's emulated children must not outlive the check."""
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=stdout, stderr=stderr, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:  # TimeoutExpired, KeyboardInterrupt, SystemExit
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise EmulationError(f"{cmd[0]} ... timed out after {timeout} s") from None
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_logged(
    cmd: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    timeout: int = 3600,
    what: str = "command",
) -> None:
    with open(log, "ab") as out:
        proc = run_process(cmd, env=env, timeout=timeout, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = log.read_text(errors="replace").splitlines()[-5:]
        raise EmulationError(
            f"{what} failed (exit {proc.returncode}), see {log}: " + " | ".join(tail)
        )


# --- the cached rootfs -----------------------------------------------------------------------


def cache_key(packages: Sequence[str] = PACKAGES) -> str:
    spec = json.dumps({"suite": SUITE, "arch": ARCH, "variant": "minbase", "packages": packages})
    return hashlib.sha256(spec.encode()).hexdigest()[:10]


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One rootfs builder per cache directory at a time (CI jobs may share it)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _stamp(tarball: Path) -> str:
    st = tarball.stat()
    return f"{tarball.name} {st.st_size} {st.st_mtime_ns}\n"


def _debootstrap(target: Path, mirror: str, log: Path) -> None:
    """Two-stage debootstrap: the first stage on the host, the second inside the rootfs under
    qemu (no binfmt_misc needed), in a private mount namespace."""
    safe_rmtree(target)
    run_logged(
        [
            "debootstrap",
            f"--arch={ARCH}",
            "--variant=minbase",
            "--foreign",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(target),
            mirror,
        ],
        log,
        what="debootstrap (first stage)",
    )
    proc = target / "proc"
    if proc.is_symlink():  # debootstrap links proc -> /proc inside docker: make it a directory
        proc.unlink()
        proc.mkdir()
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBOOTSTRAP_DIR": "/debootstrap",
    }
    run_logged(
        guest_command(target, ["/debootstrap/debootstrap", "--second-stage"], env, system=False),
        log,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QEMU_CPU": "cortex-a72"},
        what="debootstrap (second stage, emulated)",
    )
    leftover = mounts_under(target)
    if leftover:
        raise EmulationError(f"still mounted after debootstrap, unmount first: {leftover}")
    with contextlib.suppress(OSError):  # proot's empty mount point for the host, if made
        (target / "host-rootfs").rmdir()
    safe_rmtree(target / "var" / "cache" / "apt" / "archives")
    (target / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)


def ensure_rootfs(
    cache: Path, mirror: str, log: Path, progress: Callable[[str], None] = print
) -> Path:
    """The extracted rootfs, from the cached tarball, built by debootstrap when there is none
    (about 6.5 minutes and 460 MB; the tarball is about 110 MB)."""
    key = cache_key()
    tarball = cache / f"{SUITE}-{ARCH}-{key}.tar.gz"
    rootfs = cache / f"rootfs-{key}"
    with _locked(cache):
        if tarball.is_file() and (rootfs / STAMP).is_file():
            if (rootfs / STAMP).read_text() == _stamp(tarball):
                return rootfs
        if not tarball.is_file():
            build = cache / f"rootfs-{key}.build"
            progress(f"building the arm64 {SUITE} rootfs with debootstrap (log: {log})")
            _debootstrap(build, mirror, log)
            part = tarball.with_name(tarball.name + ".part")
            run_logged(
                ["tar", "-czf", str(part), "-C", str(build), "--numeric-owner", "."],
                log,
                what="packing the rootfs",
            )
            part.rename(tarball)
            safe_rmtree(build)
        progress(f"extracting {tarball}")
        fresh = cache / f"rootfs-{key}.new"
        safe_rmtree(fresh)
        fresh.mkdir()
        run_logged(
            ["tar", "-xzf", str(tarball), "-C", str(fresh), "--numeric-owner"],
            log,
            what="extracting the rootfs",
        )
        (fresh / STAMP).write_text(_stamp(tarball))
        safe_rmtree(rootfs)
        fresh.rename(rootfs)
    return rootfs
