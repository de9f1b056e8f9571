"""What machine a benchmark ran on, so that two results files can be compared.

A latency number means little without the CPU, the core count, the library versions
and, on a Raspberry Pi, whether the SoC was hot or throttled while it ran. Everything
here is read from files the OS exposes (``/proc``, ``/sys``) or package metadata,
never by importing the heavy libraries themselves, so collecting it is cheap and
works on a device without TensorFlow. Fields the OS does not expose are ``None``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Distributions whose versions change benchmark numbers.
LIBRARIES = ("keras2edge", "numpy", "ai-edge-litert", "tflite-runtime", "onnxruntime", "tensorflow",
             "tensorflow-cpu", "keras", "tflite", "onnx")

# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation).
_THROTTLE_BITS = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "ARM frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00 \n")
    except OSError:
        return None


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name, from ``/proc/cpuinfo`` where available.

    x86 reports ``model name``; ARM kernels report ``Model`` (board) or
    ``Hardware``/``CPU part`` instead, so those are tried in turn before falling
    back to :func:`platform.processor`.

    Examples
    --------
    >>> cpu_model("processor : 0\\nmodel name : Intel(R) Xeon(R) CPU @ 2.20GHz\\n")
    'Intel(R) Xeon(R) CPU @ 2.20GHz'
    """
    text = cpuinfo if cpuinfo is not None else (_read("/proc/cpuinfo") or "")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if fields.get(key):
            return fields[key]
    if fields.get("CPU part"):
        return f"ARM CPU part {fields['CPU part']}"
    return platform.processor() or platform.machine() or "unknown"


def decode_throttled(value: int) -> list[str]:
    """Name the bits set in a Raspberry Pi ``get_throttled`` value.

    Examples
    --------
    >>> decode_throttled(0x50005)
    ['under-voltage now', 'throttled now', 'under-voltage has occurred', 'throttling has occurred']
    >>> decode_throttled(0)
    []
    """
    return [name for bit, name in sorted(_THROTTLE_BITS.items()) if value & (1 << bit)]


def _vcgencmd(*args: str) -> str | None:
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def thermal_state() -> dict[str, Any]:
    """CPU governor, current frequency, temperature and Pi throttling, when exposed.

    Collected before and after a run: a governor of ``powersave`` or a throttled Pi
    explains slow numbers better than any code change would.
    """
    state: dict[str, Any] = {
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu0_mhz": None,
        "temperature_c": None,
        "throttled": None,
        "throttled_flags": None,
        "load_average": None,
    }
    freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    if freq and freq.isdigit():
        state["cpu0_mhz"] = int(freq) / 1000.0
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    if temp and temp.lstrip("-").isdigit():
        state["temperature_c"] = int(temp) / 1000.0
    throttled = _vcgencmd("get_throttled")
    if throttled and "=" in throttled:
        try:
            value = int(throttled.split("=", 1)[1], 16)
        except ValueError:
            value = None
        if value is not None:
            state["throttled"] = hex(value)
            state["throttled_flags"] = decode_throttled(value)
    if hasattr(os, "getloadavg"):
        state["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return state


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that matter, from package metadata only."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    """Everything that identifies the machine and software a run measured.

    Returns
    -------
    dict
        ``cpu_model``, ``arch``, ``logical_cores``, ``usable_cores`` (CPU affinity,
        which is what the benchmark can actually use in a container),
        ``memory_bytes``, ``os``, ``python``, ``board`` (Raspberry Pi model from
        the device tree, else ``None``), ``is_raspberry_pi``, ``libraries`` and
        the :func:`thermal_state` at collection time under ``state``.

    Examples
    --------
    >>> sorted(machine_info())[:3]
    ['arch', 'board', 'cpu_model']
    """
    from edge_runtime.serve.config import usable_cores  # not at the top: the serve package is large

    board = _read("/proc/device-tree/model")
    memory = None
    meminfo = _read("/proc/meminfo")
    if meminfo:
        for line in meminfo.splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    return {
        "cpu_model": cpu_model(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_bytes": memory,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "board": board,
        "is_raspberry_pi": bool(board and "raspberry pi" in board.lower()),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "libraries": library_versions(),
        "state": thermal_state(),
    }
