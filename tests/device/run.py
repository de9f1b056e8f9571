#!/usr/bin/env python3
"""Emulated Raspberry Pi checks: install a keras2edge bundle in Debian arm64/armhf and use it.

There is no Raspberry Pi here, but a real Debian bookworm ARM userland runs under
QEMU user-mode emulation (qemu-user-static + binfmt_misc). This script

1. builds, once per machine, Debian bookworm ``arm64`` and ``armhf`` root file
   systems with debootstrap and caches them (``--cache``, default
   ``/var/cache/keras2edge-device``; rebuilt when absent or built from another
   package list);
2. makes deployment bundles on this machine with ``python -m convert bundle``
   of two models: the MNIST digit model (``--artifacts``, or a small MLP it trains
   and converts here) and an RGB camera-style model (``--rgb-artifacts``, or a
   small depthwise-separable CNN it trains here on generated coloured shapes);
3. inside each root file system, as an unprivileged user ``pi`` with no
   TensorFlow and no access to this repository, unpacks the bundle tarball,
   runs ``./run.sh install`` (a venv + the bundled wheel + pinned requirements
   from PyPI), ``./run.sh check`` (the self-test) per backend,
   ``tests/device/runtime_check.py`` (runtime behaviour that needs no
   TensorFlow) and ``python -m benchmarks --quick``;
4. prints a table (arch, backend, artifact, check, self-test accuracy, result)
   and exits 1 if anything failed, 2 if the emulator could not be set up.

Timings measured here come from an emulated CPU and say nothing about a real Pi;
they are reported only as "ran under emulation".

Needs root (debootstrap, chroot, mount) and network access to the Debian archive
this machine's apt uses (or ``KERAS2EDGE_DEBIAN_MIRROR``) and to PyPI. Usage::

    sudo .venv/bin/python tests/device/run.py [--artifacts DIR] [--arch arm64,armhf]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = Path(os.environ.get("KERAS2EDGE_DEVICE_CACHE", "/var/cache/keras2edge-device"))


def debian_mirror() -> str:
    """The Debian archive this machine's apt already uses, so no host name is baked in here."""
    if os.environ.get("KERAS2EDGE_DEBIAN_MIRROR"):
        return os.environ["KERAS2EDGE_DEBIAN_MIRROR"]
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for source in sources:
        with contextlib.suppress(OSError):
            for line in source.read_text().splitlines():
                words = line.split()
                if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                    return words[1]
                if (words[:1] == ["deb"] and len(words) > 2
                        and "security" not in words[-3 if words[1].startswith("[") else 1]):
                    return words[2] if words[1].startswith("[") else words[1]
    raise SetupError("no Debian mirror found in /etc/apt; set KERAS2EDGE_DEBIAN_MIRROR")

SUITE = "bookworm"
STEP_TIMEOUT = 1800
USER = "pi"


@dataclass(frozen=True)
class Arch:
    """One emulated device: Debian architecture, bundle target and QEMU CPU model."""

    debian: str
    target: str
    qemu: str
    cpu: str
    packages: tuple[str, ...]
    bench_install: str


# QEMU_CPU: cortex-a72 is the Pi 4's core; the default aarch64 model makes OpenBLAS
# report false divide-by-zero warnings and runs about twice as slowly. qemu-arm 7.2
# has no 32-bit cortex-a72 model, so armhf uses cortex-a15 (ARMv7-A, NEON, VFPv4).
# The benchmark's own dependencies (psutil, matplotlib) come from PyPI wheels on arm64;
# PyPI has no armv7l wheels of them (nor of numpy, Pillow), so on armhf they are Debian packages, seen
# through the bundle's --system-site-packages venv, as a Pi user would install them.
ARCHES = {
    "arm64": Arch("arm64", "arm64", "aarch64", "cortex-a72",
                  ("python3", "python3-venv", "python3-pip", "ca-certificates"),
                  bench_install='pip install "$(ls keras2edge-*.whl)[bench]"'),
    "armhf": Arch("armhf", "armv7l", "arm", "cortex-a15",
                  ("python3", "python3-venv", "python3-pip", "ca-certificates", "python3-numpy", "python3-pil",
                   "python3-psutil", "python3-matplotlib"),
                  bench_install='python -c "import psutil, matplotlib; '
                                'print(psutil.__version__, matplotlib.__version__)"'),
}


@dataclass
class Row:
    """One line of the summary table."""

    arch: str
    backend: str
    artifact: str
    check: str
    accuracy: str
    passed: bool
    seconds: float
    note: str = ""


class SetupError(Exception):
    """The emulated environment could not be prepared (not a product failure)."""


def log(message: str) -> None:
    print(f"[device] {message}", flush=True)


def sh(cmd: list[str], timeout: int = STEP_TIMEOUT, env: dict[str, str] | None = None,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host command, echoing it; raise SetupError on failure when ``check``."""
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def ensure_host_tools() -> None:
    """qemu-user-static, debootstrap and a mounted, enabled binfmt_misc."""
    if os.geteuid() != 0:
        raise SetupError("needs root (debootstrap, chroot, mount); run with sudo")
    missing = [tool for tool in ("debootstrap", "qemu-aarch64-static", "qemu-arm-static", "update-binfmts")
               if not shutil.which(tool)]
    if missing:
        log(f"installing host packages for {', '.join(missing)}")
        sh(["apt-get", "update", "-q"], timeout=600)
        sh(["apt-get", "install", "-y", "-q", "qemu-user-static", "debootstrap", "binfmt-support"], timeout=900)
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
    for arch in ARCHES.values():
        entry = binfmt / f"qemu-{arch.qemu}"
        if not entry.exists() or "enabled" not in entry.read_text():
            sh(["update-binfmts", "--enable", f"qemu-{arch.qemu}"])
        if "enabled" not in entry.read_text():
            raise SetupError(f"binfmt_misc handler qemu-{arch.qemu} is not enabled")


def ensure_rootfs(cache: Path, arch: Arch) -> Path:
    """Return the cached bookworm root file system for ``arch``, building it if needed.

    The stamp file records the package list; a rootfs built from a different list
    (or left half-built by an interrupted run) is rebuilt.
    """
    root = cache / f"{SUITE}-{arch.debian}"
    stamp = root / ".keras2edge-rootfs"
    wanted = " ".join(arch.packages)
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        log(f"{arch.debian}: cached root file system {root}")
        return root
    started = time.monotonic()
    partial = cache / f"{SUITE}-{arch.debian}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    sh(["debootstrap", f"--arch={arch.debian}", "--variant=minbase", f"--include={','.join(arch.packages)}",
        SUITE, str(partial), debian_mirror()], timeout=3600)
    sh(["chroot", str(partial), "/usr/sbin/useradd", "--create-home", "--shell", "/bin/sh", USER],
       env={**_base_env(arch), "HOME": "/root"})
    (partial / ".keras2edge-rootfs").write_text(wanted + "\n")
    os.replace(partial, root)
    log(f"{arch.debian}: built root file system in {time.monotonic() - started:.0f} s (cold build)")
    return root


def _base_env(arch: Arch) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "QEMU_CPU": arch.cpu,
    }
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def user_env(arch: Arch) -> dict[str, str]:
    """Environment inside the chroot: a plain user shell, plus the host's CA bundle.

    Nothing of the host's pip configuration (find-links, extra indexes pointing at
    local directories, constraints) leaks in: the device sees PyPI only.
    """
    return {
        **_base_env(arch),
        "HOME": f"/home/{USER}",
        "USER": USER,
        "PIP_CERT": "/etc/ssl/certs/host-ca-certificates.crt",
        "SSL_CERT_FILE": "/etc/ssl/certs/host-ca-certificates.crt",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_DEFAULT_TIMEOUT": "180",
        "PIP_CONFIG_FILE": "/dev/null",
    }


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """Mount /proc and bind /dev into ``root`` for the duration; never /sys.

    /sys stays out on purpose: onnxruntime's CPU detection reads the host's x86
    sysfs topology and crashes under emulation.
    """
    shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")
    shutil.copy2("/etc/ssl/certs/ca-certificates.crt", root / "etc" / "ssl" / "certs" / "host-ca-certificates.crt")
    mounts = [(["mount", "-t", "proc", "proc", str(root / "proc")], root / "proc"),
              (["mount", "--bind", "/dev", str(root / "dev")], root / "dev")]
    done: list[Path] = []
    try:
        for cmd, point in mounts:
            sh(cmd)
            done.append(point)
        yield
    finally:
        for point in reversed(done):
            subprocess.run(["umount", "-l", str(point)], check=False)


def in_chroot(root: Path, arch: Arch, script: str, timeout: int = STEP_TIMEOUT) -> tuple[int, str, str, float]:
    """Run ``script`` with /bin/sh as user pi in ``root``; return (rc, stdout, stderr, seconds)."""
    log(f"{arch.debian}$ {script}")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["chroot", f"--userspec={USER}:{USER}", str(root), "/bin/sh", "-c", f"cd /home/{USER}/k2e && {script}"],
            capture_output=True, text=True, timeout=timeout, env=user_env(arch), check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return 124, str(exc.stdout or ""), f"timed out after {timeout} s", time.monotonic() - started
    seconds = time.monotonic() - started
    for line in (proc.stdout + proc.stderr).strip().splitlines():
        print(f"    {line}", flush=True)
    return proc.returncode, proc.stdout, proc.stderr, seconds


def make_artifacts(work: Path, python: str) -> Path:
    """Train a small MLP and convert it to the int8 artifacts a Pi user would ship."""
    model_dir, artifacts = work / "model", work / "artifacts"
    sh([python, "-m", "train", "--out", str(model_dir), "--epochs", "2", "--train-limit", "12000", "--verbose", "0"])
    sh([python, "-m", "convert", str(model_dir / "model.keras"), "--out", str(artifacts),
        "--formats", "tflite_int8,onnx_int8_static"])
    return artifacts


def make_rgb_artifacts(work: Path, python: str) -> Path:
    """Train a small RGB depthwise-separable CNN on generated coloured shapes and convert it."""
    data, model_dir, artifacts = work / "shapes", work / "model_rgb", work / "artifacts_rgb"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sh([python, "-c", f"from pathlib import Path; from tests.datasets import write_shape_folder; "
        f"write_shape_folder(Path({str(data)!r}), per_class=60)"], env=env)
    sh([python, "-m", "train", "--data", str(data), "--arch", "cnn", "--out", str(model_dir), "--verbose", "0",
        "--epochs", "8", "--batch-size", "16", "--learning-rate", "0.01", "--seed", "3"])
    sh([python, "-m", "convert", str(model_dir / "model.keras"), "--out", str(artifacts),
        "--formats", "tflite_int8,onnx_int8_static"])
    return artifacts


def make_bundle(python: str, artifacts: Path, name: str, target: str, out: Path) -> Path:
    """Run the bundle command on this machine; return the tarball."""
    sh([python, "-m", "convert", "bundle", str(artifacts), "--artifact", name, "--target", target, "--out", str(out)])
    return out.with_name(out.name + ".tar.gz")


def selftest_row(root: Path, arch: Arch, bundle: str, artifact: str, backend: str, venv: str) -> Row:
    """``./run.sh check --json`` in ``bundle`` with ``backend``; one table row."""
    rc, out, err, seconds = in_chroot(
        root, arch, f"cd {bundle} && KERAS2EDGE_VENV={venv} ./run.sh check --backend {backend} --json")
    try:
        result = json.loads(out)
        accuracy = f"{result['correct']}/{result['samples']} = {result['accuracy']:.1%}"
        note = (f"backend {result['backend']}; "
                f"top-1 agreement with build machine {result['agreement']}/{result['samples']}, "
                f"max |dp| {result['max_abs_diff']:.2g}; batch-1 {result['latency_ms_batch1']:.3f} ms "
                "(ran under emulation)")
        if result["failures"]:
            note += "; " + "; ".join(result["failures"])
    except (json.JSONDecodeError, KeyError, TypeError):
        accuracy, note = "-", (err.strip().splitlines() or ["no output"])[-1]
    return Row(arch.debian, backend, artifact, "self-test", accuracy, rc == 0, seconds, note)


def step_row(root: Path, arch: Arch, check: str, script: str, backend: str = "-", artifact: str = "-") -> Row:
    rc, out, err, seconds = in_chroot(root, arch, script)
    last = ((out + err).strip().splitlines() or ["no output"])[-1]
    return Row(arch.debian, backend, artifact, check, "-", rc == 0, seconds, last if rc else "")


def run_arch(root: Path, arch: Arch, bundles: dict[str, tuple[Path, str]]) -> list[Row]:
    """Everything a Pi user does with the bundles for ``arch``, inside its rootfs."""
    home = root / "home" / USER
    work = home / "k2e"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for tarball, _ in bundles.values():
        shutil.copy2(tarball, work / tarball.name)
    shutil.copy2(HERE / "runtime_check.py", work / "runtime_check.py")
    sh(["chroot", str(root), "/bin/chown", "-R", f"{USER}:{USER}", f"/home/{USER}/k2e"],
       env={**_base_env(arch), "HOME": "/root"})

    rows: list[Row] = []
    names = list(bundles)
    first = names[0]
    venv = f"/home/{USER}/k2e/{first}/.venv"
    unpack = " && ".join(f"tar xzf {n}.tar.gz" for n in names)
    install = step_row(root, arch, "unpack + ./run.sh install (pip from PyPI)",
                       f"{unpack} && cd {first} && ./run.sh install")
    rows.append(install)
    if not install.passed:
        return rows
    rows.append(step_row(root, arch, "no TensorFlow/keras installed",
                         f"{venv}/bin/python -c \"import importlib.util as u, sys; "
                         f"found=[m for m in ('tensorflow', 'keras', 'tf_keras') if u.find_spec(m)]; "
                         f"print('importable:', found or 'none'); sys.exit(1 if found else 0)\""))
    for name, (_, artifact) in bundles.items():
        backends = ["auto", "numpy"] if "tflite" in artifact else ["auto"]
        for backend in backends:
            rows.append(selftest_row(root, arch, name, artifact, backend, venv))
    dirs = " ".join(names)
    rows.append(step_row(root, arch, "runtime_check.py (errors, backend agreement, CLI)",
                         f"{venv}/bin/python runtime_check.py {dirs}", backend="all installed"))
    rows.append(step_row(root, arch, f"benchmark deps: {arch.bench_install.split(';')[0][:40]}",
                         f"cd {first} && . {venv}/bin/activate && {arch.bench_install}"))
    rows.append(step_row(root, arch, "python -m benchmarks --quick (ran under emulation)",
                         f"{venv}/bin/python -m benchmarks {first} --out bench --quick", backend="all installed",
                         artifact=bundles[first][1]))
    return rows


def print_table(rows: list[Row]) -> None:
    header = ("arch", "backend", "artifact", "check", "self-test accuracy", "result", "seconds (emulated)")
    table = [header] + [
        (r.arch, r.backend, r.artifact, r.check, r.accuracy, "PASS" if r.passed else "FAIL", f"{r.seconds:.0f}")
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    print()
    for i, line in enumerate(table):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    notes = [r for r in rows if r.note]
    if notes:
        print("\nnotes:")
        for r in notes:
            print(f"  {r.arch} {r.backend} {r.artifact} {r.check}: {r.note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where root file systems are cached")
    parser.add_argument("--artifacts", type=Path,
                        help="output of python -m convert (default: train + convert a small MLP)")
    parser.add_argument("--rgb-artifacts", type=Path,
                        help="an RGB model's python -m convert output (default: train + convert a small CNN on shapes)")
    parser.add_argument("--arch", default="arm64,armhf", help="comma-separated: arm64, armhf")
    parser.add_argument("--python", default=sys.executable, help="project Python used to build bundles on the host")
    args = parser.parse_args(argv)
    arches = [a.strip() for a in args.arch.split(",") if a.strip()]
    unknown = sorted(set(arches) - set(ARCHES))
    if unknown:
        parser.error(f"unknown --arch {', '.join(unknown)} (choose from {', '.join(ARCHES)})")

    started = time.monotonic()
    rows: list[Row] = []
    try:
        ensure_host_tools()
        args.cache.mkdir(parents=True, exist_ok=True)
        with open(args.cache / ".lock", "w") as lock, tempfile.TemporaryDirectory(prefix="keras2edge-device-") as tmp:
            fcntl.flock(lock, fcntl.LOCK_EX)
            work = Path(tmp)
            models = {"mnist": args.artifacts or make_artifacts(work, args.python),
                      "rgb": args.rgb_artifacts or make_rgb_artifacts(work, args.python)}
            for name in arches:
                arch = ARCHES[name]
                root = ensure_rootfs(args.cache, arch)
                # 32-bit ARM has no ONNX Runtime wheel: .tflite only there.
                wanted = ("tflite_int8",) if arch.target == "armv7l" else ("tflite_int8", "onnx_int8_static")
                bundles: dict[str, tuple[Path, str]] = {}
                for model, artifacts in models.items():
                    for artifact in wanted:
                        out = work / f"pi-{arch.target}-{model}-{artifact}"
                        bundles[out.name] = (make_bundle(args.python, artifacts, artifact, arch.target, out),
                                             f"{model} {artifact}")
                with mounted(root):
                    rows.extend(run_arch(root, arch, bundles))
    except (SetupError, subprocess.TimeoutExpired) as exc:
        print_table(rows)
        print(f"\ndevice checks could not run: {exc}", file=sys.stderr)
        return 2
    print_table(rows)
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} checks passed in {time.monotonic() - started:.0f} s "
          "(timings ran under emulation; they say nothing about a real Raspberry Pi)")
    # The closing line in the plain "N passed, N failed" form that CI summaries read.
    print(f"device: {len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
