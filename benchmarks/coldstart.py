"""Cold start measured in a fresh process: import, load, first inference, peak RSS.

What a command-line tool or a freshly booted device pays before its first answer is
dominated by imports and model loading, which a warm loop never sees. Each subject
therefore runs in a fresh Python process of its own, which times the three phases
itself and reports the peak resident memory of its own process right after the
first inference, i.e. the peak memory needed to get one answer (see
:func:`_peak_rss_bytes` for why that is ``VmHWM`` on Linux rather than ``ru_maxrss``).

The subjects:

``edge_runtime``
    ``import edge_runtime``; ``edge_runtime.load(path)``; ``model.predict(x)``.
``litert``, ``tflite_runtime``, ``onnxruntime`` (bare)
    Exactly the few lines a user writes with the runtime alone (:func:`_bare_tflite`,
    :func:`_bare_onnxruntime`): import numpy and the runtime, create the
    interpreter or session, preprocess one input in numpy with the constants of the
    manifest written in as literals (scale, offset, mean/std, shape), quantise it
    with the input tensor's own scale and zero point, set / invoke / get,
    dequantise. Nothing of this package or of edge_runtime is imported, so the bare
    side costs what a user's script costs.
``keras``
    ``keras.models.load_model`` (or a Keras model around a SavedModel's
    ``serving_default`` signature), then warm ``model(x)`` and ``model.predict(x)``,
    so TensorFlow is never imported into the benchmark process (where its thread
    pools would disturb the other measurements).

A child must not get for free what a device has to import. So this module imports
nothing but :mod:`sys` and :mod:`time` at module level, a child's arguments are plain
``key=value`` strings (no :mod:`json` before the clock starts), and
:func:`run_in_child` starts the interpreter with ``-S`` and the parent's ``sys.path``
(all but the Keras child, whose seconds of TensorFlow import nothing is compared
with): a development (editable) install runs an import hook at start-up that imports
``pathlib``, ``re``, ``contextlib`` and more, which a wheel installed on a device does
not. The child then imports :mod:`os`, as the ``site`` module of every normal
start-up does, before its clock starts.
"""

import sys
import time

SUBJECTS = ("edge_runtime", "litert", "tflite_runtime", "onnxruntime", "keras")
_RESULT_PREFIX = "BENCHMARK-RESULT "
# What the child runs: the parent's sys.path comes in PYTHONPATH (``-S`` skips site).
_BOOT = "import os, sys; from benchmarks.coldstart import main; sys.exit(main(sys.argv[1:]))"


def _peak_rss_bytes() -> tuple:
    """This process's peak resident set size in bytes and where it was read from.

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
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (int(peak) if sys.platform == "darwin" else int(peak) * 1024), "ru_maxrss"


def _now() -> tuple:
    """Wall and CPU clocks: on a busy machine CPU time shows the work without the waiting."""
    return time.perf_counter(), time.process_time()


def _numbers(text: str) -> tuple:
    return tuple(float(v) for v in text.split(","))


def _edge_runtime(args: dict) -> dict:
    """``import edge_runtime``, ``load``, ``predict``: what the README shows."""
    t0 = _now()
    import edge_runtime

    t1 = _now()
    model = edge_runtime.load(args["artifact"], backend=args.get("backend", "auto"),
                              threads=int(args["threads"]) if args.get("threads") else None)
    t2 = _now()
    import numpy as np

    raw = np.load(args["images"])[:1]
    t3 = _now()
    probabilities = model.predict(raw)
    t4 = _now()
    return {"backend": model.backend, "times": (t0, t1, t2, t3, t4), "top1": int(probabilities.argmax())}


def _user_preprocess(raw, scale: float, offset: float, mean: tuple[float, ...], std: tuple[float, ...]):
    """The manifest's preprocessing of a numpy array, as a user writes it out by hand.

    Unannotated arrays: this module imports nothing but sys and time before a child's clock starts.
    """
    import numpy as np

    x = raw.astype(np.float32) * np.float32(scale) + np.float32(offset)
    if mean != (0.0,) or std != (1.0,):
        x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return x


def _bare_tflite(args: dict) -> dict:
    """The user's script for a ``.tflite`` file with LiteRT (or tflite_runtime): no edge_runtime.

    The constants are the manifest's, as a user copies them into a script; the
    quantisation parameters come from the interpreter, as the LiteRT examples show.
    """
    scale, offset = float(args["scale"]), float(args["offset"])
    mean, std = _numbers(args["mean"]), _numbers(args["std"])
    shape = (1, *(int(d) for d in args["shape"].split(",")))
    threads = int(args["threads"]) if args.get("threads") else None
    t0 = _now()
    import numpy as np

    if args["subject"] == "litert":
        from ai_edge_litert.interpreter import Interpreter
    else:
        from tflite_runtime.interpreter import Interpreter
    t1 = _now()
    interpreter = Interpreter(model_path=args["artifact"], num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    t2 = _now()
    raw = np.load(args["images"])[:1]
    t3 = _now()
    x = _user_preprocess(raw, scale, offset, mean, std).reshape(shape)
    if inp["dtype"] != np.float32:
        s, z = inp["quantization"]
        limits = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / s) + z, limits.min, limits.max).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"])
    if out["dtype"] != np.float32:
        s, z = out["quantization"]
        y = (y.astype(np.float32) - z) * s
    t4 = _now()
    return {"backend": args["subject"], "times": (t0, t1, t2, t3, t4), "top1": int(y.argmax())}


def _bare_onnxruntime(args: dict) -> dict:
    """The user's script for an ``.onnx`` file with ONNX Runtime (float input, as keras2edge's are)."""
    scale, offset = float(args["scale"]), float(args["offset"])
    mean, std = _numbers(args["mean"]), _numbers(args["std"])
    shape = (1, *(int(d) for d in args["shape"].split(",")))
    threads = int(args["threads"]) if args.get("threads") else None
    t0 = _now()
    import numpy as np
    import onnxruntime as ort

    t1 = _now()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(args["artifact"], sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    t2 = _now()
    raw = np.load(args["images"])[:1]
    t3 = _now()
    x = _user_preprocess(raw, scale, offset, mean, std)
    y = session.run(None, {name: x.reshape(shape)})[0]
    t4 = _now()
    return {"backend": "onnxruntime", "times": (t0, t1, t2, t3, t4), "top1": int(y.argmax())}


def _keras(args: dict) -> dict:
    """Keras: load the source model, classify one input, then (optionally) time warm calls.

    A ``.keras`` / ``.h5`` file loads with ``keras.models.load_model``; a SavedModel
    directory (``model.export``) is wrapped in a Keras model around its
    ``serving_default`` signature, as the converter reads one. Inputs get the
    manifest's preprocessing through the reference arithmetic, as in training and
    parity.
    """
    import json
    import os

    import numpy as np

    from edge_runtime.preprocessing import apply_preprocessing
    from edge_runtime.records.manifest import Manifest

    spec = json.loads(args["spec"])
    pre = Manifest.read(spec["artifact_dir"]).preprocessing
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t0 = _now()
    import keras

    t1 = _now()
    if os.path.isdir(spec["artifact"]):
        inp = keras.Input(pre.model_input_shape)
        out = keras.layers.TFSMLayer(spec["artifact"], call_endpoint="serving_default")(inp)
        keras_model = keras.Model(inp, next(iter(out.values())) if isinstance(out, dict) else out)
    else:
        keras_model = keras.models.load_model(spec["artifact"], compile=False)
    t2 = _now()
    images = np.load(spec["images"])
    t3 = _now()
    first = np.asarray(keras_model(apply_preprocessing(images[:1], pre), training=False))
    t4 = _now()
    result = {"backend": f"keras {keras.__version__} ({keras.backend.backend()})", "times": (t0, t1, t2, t3, t4),
              "top1": int(first.argmax()), "peak": _peak_rss_bytes()}
    result["all_top1"] = np.asarray(keras_model(apply_preprocessing(images, pre), training=False)).argmax(1).tolist()
    if spec.get("batch_sizes"):
        result["latency"] = _keras_latency(keras_model, images, pre, spec)
    return result


def _keras_latency(keras_model, images, pre, spec: dict) -> list:
    """Warm ``model(x)`` and ``model.predict(x)`` at each batch size, from raw inputs."""
    from benchmarks.stats import TimingPolicy, measure
    from edge_runtime.preprocessing import apply_preprocessing

    policy = TimingPolicy(**spec["policy"])
    predict_policy = TimingPolicy(**spec["predict_policy"])
    records = []
    for batch in spec["batch_sizes"]:
        x = images[:batch]
        call = measure(lambda: keras_model(apply_preprocessing(x, pre), training=False), batch, policy)
        records.append({"subject": "keras_call", "batch_size": batch, "stats": call.to_dict()})
        pred = measure(lambda: keras_model.predict(apply_preprocessing(x, pre), verbose=0), batch, predict_policy)
        records.append({"subject": "keras_predict", "batch_size": batch, "stats": pred.to_dict()})
        print(f"  keras bs={batch}: model(x) p50={call.p50_ms:.3f} ms, predict p50={pred.p50_ms:.3f} ms",
              file=sys.stderr, flush=True)
    return records


_RUN = {"edge_runtime": _edge_runtime, "litert": _bare_tflite, "tflite_runtime": _bare_tflite,
        "onnxruntime": _bare_onnxruntime, "keras": _keras}


def run_in_child(spec: dict, timeout: float = 600.0) -> dict:
    """Run one cold-start subject in a fresh interpreter and return what it measured.

    Parameters
    ----------
    spec
        ``subject`` (one of :data:`SUBJECTS`), ``artifact`` (path), ``images`` (a
        ``.npy`` of raw inputs), ``threads`` (None: the library default); for
        edge_runtime ``backend``; for the bare subjects the preprocessing
        constants ``scale``, ``offset``, ``mean``, ``std`` and the per-sample
        ``shape`` of the model input; for Keras ``artifact_dir`` (its manifest
        gives the preprocessing) and optionally ``batch_sizes``, ``policy`` and
        ``predict_policy`` for the warm measurements.
    timeout
        Seconds before the child is killed.

    Returns
    -------
    dict
        ``import_ms``, ``load_ms``, ``first_inference_ms``, ``total_ms``,
        ``peak_rss_bytes``, ``rss_source``, ``backend``, ``top1`` (class of the
        first inference), plus ``wall_ms`` (the whole process as seen from outside,
        interpreter start-up included) and, for Keras, ``all_top1`` and with
        batch sizes ``latency`` records.

    Raises
    ------
    RuntimeError
        The child failed; the message carries the end of its stderr.

    Examples
    --------
    >>> run_in_child({"subject": "edge_runtime", "artifact": "out/artifacts/tflite_int8.tflite",
    ...               "images": "images.npy"})["total_ms"]  # doctest: +SKIP
    96.3
    """
    import json
    import os
    import subprocess
    from pathlib import Path

    subject = spec["subject"]
    if subject not in SUBJECTS:
        raise ValueError(f"unknown cold-start subject {subject!r}; expected one of {SUBJECTS}")
    if subject == "keras":
        args = {"subject": "keras", "spec": json.dumps(spec)}
    else:
        args = {k: ("" if v is None else ",".join(map(repr, v)) if isinstance(v, (list, tuple)) else str(v))
                for k, v in spec.items()}
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([package_root, *(p for p in sys.path if p)]))
    command = [sys.executable, *(["-S"] if subject != "keras" else []), "-c", _BOOT,
               *(f"{k}={v}" for k, v in args.items())]
    # Progress lines from the child go straight to our stderr; only the result is captured.
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=env, check=False)
    wall_ms = (time.perf_counter() - start) * 1e3
    for line in done.stderr.splitlines():
        if line.startswith("  keras "):
            print(line, file=sys.stderr, flush=True)
    result_lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
    if done.returncode != 0 or not result_lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{subject} child exited with {done.returncode}: {tail}")
    result = json.loads(result_lines[-1][len(_RESULT_PREFIX):])
    result["wall_ms"] = wall_ms
    return result


def main(argv: list) -> int:
    """Child entry point: ``key=value`` arguments in, one result line out."""
    args = dict(a.split("=", 1) for a in argv)
    subject = args.get("subject")
    if subject not in SUBJECTS:
        print(f"unknown subject {subject!r}; expected one of {SUBJECTS}", file=sys.stderr)
        return 2
    result = _RUN[subject](args)
    # Right after the first inference, before anything else is imported or allocated.
    peak_rss, rss_source = result.pop("peak", None) or _peak_rss_bytes()
    (t0, c0), (t1, c1), (t2, c2), (t3, c3), (t4, c4) = result.pop("times")
    result.update(subject=subject, import_ms=(t1 - t0) * 1e3, load_ms=(t2 - t1) * 1e3,
                  first_inference_ms=(t4 - t3) * 1e3, cpu_ms=(c2 - c0 + c4 - c3) * 1e3,
                  peak_rss_bytes=peak_rss, rss_source=rss_source)
    result["total_ms"] = result["import_ms"] + result["load_ms"] + result["first_inference_ms"]
    import json

    print(_RESULT_PREFIX + json.dumps(result), flush=True)
    return 0
