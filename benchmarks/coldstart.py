"""Cold start measured in a fresh process: import, load, first inference, peak RSS.

What a command-line tool or a freshly booted device pays before its first answer is
dominated by imports and model loading, which a warm loop never sees. Each subject
(edge_runtime, the bare LiteRT / ONNX Runtime equivalent, Keras) therefore runs in
its own ``python -m benchmarks.coldstart`` child. The child imports only the standard
library before its clock starts, times the three phases itself, and reports the
peak resident memory of its own process right after the first inference, i.e. the peak memory
needed to get one answer (see :func:`_peak_rss_bytes` for why that is ``VmHWM`` on
Linux rather than ``ru_maxrss``). The Keras child can then go on to time ``model(x)`` and
``model.predict(x)`` warm, so TensorFlow is never imported into the benchmark process
(where its thread pools would disturb the other measurements).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

SUBJECTS = ("edge_runtime", "litert", "tflite_runtime", "onnxruntime", "keras")
_RESULT_PREFIX = "BENCHMARK-RESULT "


def _peak_rss_bytes() -> tuple[int, str]:
    """This process's peak resident set size and where it was read from.

    On Linux ``ru_maxrss`` survives ``execve``: a child forked from a 300 MB
    benchmark process reports at least 300 MB whatever it loads itself. ``VmHWM``
    in ``/proc/self/status`` is the high-water mark of the *current* address space,
    which starts fresh at exec, so it is preferred; ``ru_maxrss`` is the fallback
    elsewhere (macOS reports it in bytes, Linux in kilobytes).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "VmHWM"
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (int(peak) if sys.platform == "darwin" else int(peak) * 1024), "ru_maxrss"


def _run_subject(spec: dict[str, Any]) -> dict[str, Any]:
    """Child side: time the three phases of ``spec['subject']`` (see module doc)."""
    subject = spec["subject"]
    t0 = time.perf_counter()
    if subject == "edge_runtime":
        import edge_runtime

        t1 = time.perf_counter()
        model = edge_runtime.load(spec["artifact"], backend=spec.get("backend", "auto"), threads=spec.get("threads"))
        run = model.predict
        backend = model.backend
    elif subject == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        from benchmarks.baselines import model_input

        t1 = time.perf_counter()
        keras_model = keras.models.load_model(spec["artifact"], compile=False)
        preprocessing = spec["preprocessing"]

        def run(images: Any) -> Any:
            return keras_model(model_input(images, preprocessing), training=False)

        backend = f"keras {keras.__version__} ({keras.backend.backend()})"
    else:
        import numpy  # noqa: F401  (the bare loop's preprocessing needs it: part of its import cost)

        from benchmarks import baselines

        if subject == "onnxruntime":
            import onnxruntime  # noqa: F401
        else:
            __import__(baselines.TFLITE_INTERPRETERS[subject])
        t1 = time.perf_counter()
        run = baselines.make_baseline(subject, spec["artifact"], spec["preprocessing"], 1, spec.get("threads"))
        backend = subject
    t2 = time.perf_counter()
    import numpy as np

    images = np.load(spec["images"])
    t3 = time.perf_counter()
    run(images[:1])
    t4 = time.perf_counter()
    peak_rss, rss_source = _peak_rss_bytes()
    result: dict[str, Any] = {
        "subject": subject,
        "backend": backend,
        "import_ms": (t1 - t0) * 1e3,
        "load_ms": (t2 - t1) * 1e3,
        "first_inference_ms": (t4 - t3) * 1e3,
        "peak_rss_bytes": peak_rss,
        "rss_source": rss_source,
    }
    result["total_ms"] = result["import_ms"] + result["load_ms"] + result["first_inference_ms"]
    if subject == "keras" and spec.get("batch_sizes"):
        result["latency"] = _keras_latency(keras_model, images, spec)
    return result


def _keras_latency(keras_model: Any, images: Any, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Warm ``model(x)`` and ``model.predict(x)`` at each batch size, from uint8 images."""
    from benchmarks.baselines import model_input
    from benchmarks.stats import TimingPolicy, measure

    policy = TimingPolicy(**spec["policy"])
    predict_policy = TimingPolicy(**spec["predict_policy"])
    pre = spec["preprocessing"]
    records = []
    for batch in spec["batch_sizes"]:
        x = images[:batch]
        call = measure(lambda: keras_model(model_input(x, pre), training=False), batch, policy)
        records.append({"subject": "keras_call", "batch_size": batch, "stats": call.to_dict()})
        pred = measure(lambda: keras_model.predict(model_input(x, pre), verbose=0), batch, predict_policy)
        records.append({"subject": "keras_predict", "batch_size": batch, "stats": pred.to_dict()})
        print(f"  keras bs={batch}: model(x) p50={call.p50_ms:.3f} ms, predict p50={pred.p50_ms:.3f} ms",
              file=sys.stderr, flush=True)
    return records


def run_in_child(spec: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Run one cold-start subject in a fresh interpreter and return what it measured.

    Parameters
    ----------
    spec
        ``subject`` (one of :data:`SUBJECTS`), ``artifact`` (path), ``images``
        (a ``.npy`` of uint8 images), ``preprocessing`` (manifest block) and
        optionally ``backend``, ``threads`` and, for Keras, ``batch_sizes``,
        ``policy`` and ``predict_policy`` for the warm measurements.
    timeout
        Seconds before the child is killed.

    Returns
    -------
    dict
        ``import_ms``, ``load_ms``, ``first_inference_ms``, ``total_ms``,
        ``peak_rss_bytes``, ``backend``, plus ``wall_ms`` (the whole process as
        seen from outside, interpreter start-up included) and, for Keras with
        batch sizes, ``latency`` records.

    Raises
    ------
    RuntimeError
        The child failed; the message carries the end of its stderr.
    """
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Progress lines from the child go straight to our stderr; only the result is captured.
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.coldstart", json.dumps(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, env=env, check=False,
    )
    wall_ms = (time.perf_counter() - start) * 1e3
    for line in done.stderr.splitlines():
        if line.startswith("  keras "):
            print(line, file=sys.stderr, flush=True)
    result_lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
    if done.returncode != 0 or not result_lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{spec['subject']} child exited with {done.returncode}: {tail}")
    result = json.loads(result_lines[-1][len(_RESULT_PREFIX):])
    result["wall_ms"] = wall_ms
    return result


def main(argv: list[str]) -> int:
    """Child entry point: one JSON spec argument in, one result line out."""
    spec = json.loads(argv[0])
    if spec.get("subject") not in SUBJECTS:
        print(f"unknown subject {spec.get('subject')!r}; expected one of {SUBJECTS}", file=sys.stderr)
        return 2
    result = _run_subject(spec)
    print(_RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
