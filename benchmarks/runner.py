"""Run every measurement of a benchmark and collect the records.

One :func:`run_benchmarks` call measures, for every artifact in the manifest, every
installed backend that can run it, every batch size and thread count: edge_runtime
against the matching hand-written loop (interleaved, see
:func:`benchmarks.stats.measure_interleaved`), then cold starts in fresh processes,
then Keras in its own process. Inputs are the artifact directory's ``samples.npz``:
raw images of any size and colour mode, or feature vectors, as a device holds them.
The manifest and ``parity.json`` are read through their records
(:class:`~edge_runtime.records.manifest.Manifest`,
:class:`~edge_runtime.records.parity.ParityRecord`). The result is a plain dict (the
``results.json`` document); rendering it is :mod:`benchmarks.report`'s job.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import baselines, coldstart, digit_photos
from benchmarks.machine import machine_info, thermal_state
from benchmarks.stats import DEFAULT_POLICY, QUICK_POLICY, TimingPolicy, measure_interleaved, median
from edge_runtime.errors import BackendError, DataError, ManifestError
from edge_runtime.records.manifest import ArtifactRecord, Manifest
from edge_runtime.records.parity import ParityRecord
from edge_runtime.sample_set import SampleSet, load_samples

SCHEMA_VERSION = 1

# Backends edge_runtime can use, per artifact format. The "tensorflow" backend is not
# benchmarked: importing TensorFlow into this process would put its thread pools and
# ~500 MB next to every other measurement; Keras is measured in its own process instead.
BACKENDS_BY_FORMAT = {
    "tflite": ("litert", "tflite_runtime", "numpy"),
    "onnx": ("onnxruntime", "numpy"),
}
# Targets from the acceptance criteria; reported next to the measured values.
TARGETS = {
    "speedup_vs_keras_call": 100.0,
    "speedup_vs_keras_predict": 1000.0,
    "runtime_vs_baseline_batch1_int8": 1.0,
    "cold_start_ratio_vs_bare_litert": 1.2,
    "cold_start_rss_ratio_vs_bare_litert": 1.2,
}
QUICK_BATCH_SIZES = (1, 32)
# Alternated cold-start pairs of a --quick run: one pair is at the mercy of a single
# scheduling hiccup; three cost about three seconds and give a median.
QUICK_COLD_REPEATS = 3
DEFAULT_BATCH_SIZES = (1, 8, 64, 256)


@dataclass
class BenchConfig:
    """What to measure and how long; built by the CLI from its arguments."""

    artifact_dir: Path
    batch_sizes: list[int]
    threads: list[int | None]
    quick: bool = False
    keras_model: Path | None = None
    policy: TimingPolicy = DEFAULT_POLICY
    keras_predict_policy: TimingPolicy = field(
        default_factory=lambda: TimingPolicy(warmup_runs=2, min_runs=10, min_seconds=0.5, max_seconds=5.0))
    # Cold starts vary by tens of percent on a busy machine; the median of 9 alternated
    # pairs is far steadier than one or three.
    cold_repeats: int = 9

    @classmethod
    def for_mode(cls, artifact_dir: Path, batch_sizes: Sequence[int] | None, threads: Sequence[int] | None,
                 quick: bool, keras_model: Path | None = None) -> BenchConfig:
        """Defaults for a full run (a few minutes) or ``--quick`` (under a minute on 2 cores).

        ``--quick`` keeps every kind of measurement but shortens each: two batch
        sizes, one thread count, short timing windows and three alternated cold-start pairs.
        """
        if quick:
            return cls(artifact_dir, list(batch_sizes or QUICK_BATCH_SIZES), list(threads or [1]), True, keras_model,
                       QUICK_POLICY, TimingPolicy(warmup_runs=1, min_runs=3, min_seconds=0.0, max_seconds=1.0),
                       QUICK_COLD_REPEATS)
        from edge_runtime.serve.config import usable_cores  # not at the top: the serve package is large

        default_threads = sorted({1, usable_cores()})
        return cls(artifact_dir, list(batch_sizes or DEFAULT_BATCH_SIZES), list(threads or default_threads), False,
                   keras_model)


def progress(message: str) -> None:
    """One progress line on stderr, so stdout stays clean for the stats lines."""
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


def load_manifest(artifact_dir: Path) -> Manifest:
    """The artifact directory's manifest record, checked to list only files that are there.

    Raises
    ------
    DataError
        ``artifact_dir`` is not a directory.
    ManifestError
        No manifest, an invalid one, or a listed artifact file is missing.
    """
    if not artifact_dir.is_dir():
        raise DataError(f"artifact directory '{artifact_dir}' does not exist; run `python -m convert` first")
    manifest = Manifest.read(artifact_dir)
    for art in manifest.artifacts:
        if not (artifact_dir / art.file).is_file():
            raise ManifestError(f"'{manifest.path}' lists '{art.file}' but it is not in '{artifact_dir}'")
    return manifest


def load_parity(artifact_dir: Path) -> ParityRecord | None:
    """``parity.json`` beside the artifacts (validated by its record), or ``None`` when parity was not run."""
    return ParityRecord.find(artifact_dir)


def repeat_to(inputs: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` rows of ``inputs`` repeated as often as needed, contiguous.

    Examples
    --------
    >>> repeat_to(np.arange(3), 7).tolist()
    [0, 1, 2, 0, 1, 2, 0]
    """
    reps = math.ceil(count / len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:count]) if reps > 1 else inputs[:count].copy()


def benchmark_samples(artifact_dir: Path, manifest: Manifest) -> SampleSet:
    """The model's real test inputs (its ``samples.npz``) and the Keras model's answers to them.

    Real inputs rather than zeros or noise, so that nothing data-dependent (a
    softmax, a dynamic-range quantiser) runs an unrealistically easy path: raw
    uint8 images (any size, grayscale or RGB) or raw feature vectors, as a device
    holds them. They are the samples a device bundle carries too, so a device that
    has only the runtime (no training data set) benchmarks on the same inputs.
    """
    return load_samples(artifact_dir, manifest.input.shape)


def artifact_summaries(manifest: Manifest, parity: ParityRecord | None) -> list[dict[str, Any]]:
    """Per-artifact size and the accuracy / agreement parity measured for it."""
    per = parity.artifacts if parity is not None else {}
    rows = []
    for art in manifest.artifacts:
        p = per.get(art.name)
        measured = {"accuracy": None, "accuracy_delta": None, "agreement": None, "gate_passed": None} if p is None \
            else {"accuracy": p.accuracy, "accuracy_delta": p.accuracy_delta, "agreement": p.agreement,
                  "gate_passed": p.passed}
        rows.append({"name": art.name, "file": art.file, "format": art.format, "precision": art.precision,
                     "quantization": art.quantization, "bytes": art.bytes or None, **measured})
    return rows


def _latency_record(subject: str, artifact: ArtifactRecord | None, backend: str, threads: int | None,
                    stats: dict[str, Any]) -> dict[str, Any]:
    """One latency measurement; ``artifact`` None is the Keras model. Adds the p50 per sample."""
    name, fmt, precision = (artifact.name, artifact.format, artifact.precision) if artifact else ("keras", "keras",
                                                                                                   "float32")
    return {"kind": "latency", "subject": subject, "artifact": name, "format": fmt, "precision": precision,
            "backend": backend, "threads": threads, **stats,
            "p50_ms_per_sample": stats["p50_ms"] / stats["batch_size"]}


def _load_runtime(path: Path, backend: str, threads: int | None) -> Any:
    import edge_runtime

    return edge_runtime.load(path, backend=backend, threads=threads)


def measure_latency(config: BenchConfig, manifest: Manifest, inputs: np.ndarray,
                    notes: list[str]) -> list[dict[str, Any]]:
    """edge_runtime vs the hand-written loop for every artifact x backend x threads x batch.

    Both start from the same raw inputs; the hand-written loop applies the
    artifact's own preprocessing from the manifest. After timing, their top-1
    classes are compared and any disagreement becomes a note: the ratio only means
    something if both did the same work.
    """
    records: list[dict[str, Any]] = []
    plan = [(art, backend) for art in manifest.artifacts for backend in BACKENDS_BY_FORMAT[art.format]]
    total = len(plan) * len(config.threads) * len(config.batch_sizes)
    step = 0
    skipped: dict[tuple[str, str], list[str]] = {}
    for art, backend in plan:
        path = config.artifact_dir / art.file
        pre = manifest.preprocessing_for(art)
        for threads in config.threads:
            try:
                runtime = _load_runtime(path, backend, threads)
            except BackendError as exc:
                skipped.setdefault((backend, str(exc)), []).append(art.name)
                step += len(config.batch_sizes) * (len(config.threads) - config.threads.index(threads))
                progress(f"skip {art.name} / {backend}: {exc}")
                break
            for batch in config.batch_sizes:
                step += 1
                x = inputs[:batch]
                fns: dict[str, Callable[[], object]] = {"edge_runtime": lambda: runtime.predict(x)}
                if baselines.has_baseline(backend):
                    base = baselines.make_baseline(backend, path, pre, batch, threads)
                    fns["baseline"] = lambda: base(x)
                # Timed first, so that each subject's "first" call really is its first at this batch size.
                stats = measure_interleaved(fns, batch, config.policy)
                if "baseline" in fns:
                    agree = float(np.mean(np.argmax(runtime.predict(x), 1) == np.argmax(base(x), 1)))
                    if agree < 1.0:
                        notes.append(f"{art.name}/{backend} bs={batch}: edge_runtime and the hand-written loop "
                                     f"agree on only {agree:.1%} of top-1 classes")
                line = f"[{step}/{total}] {art.name:<20} {backend:<14} bs={batch:<4} threads={threads}"
                for subject, s in stats.items():
                    records.append(_latency_record(subject, art, backend, threads, s.to_dict()))
                    progress(f"{line} {subject:<12} {s.format_line()}")
    for (backend, reason), names in skipped.items():
        notes.append(f"backend {backend} not measured for {', '.join(names)}: {reason}")
    return records


def keras_source(config: BenchConfig, manifest: Manifest) -> tuple[Path | None, str | None]:
    """Where the source Keras model is, or why the Keras baseline cannot run.

    Looked for as ``--keras-model``, else the manifest's ``source_model`` (its
    absolute ``path``, then its ``file`` beside the artifacts), else ``model.keras``
    beside them. A ``.keras`` / ``.h5`` file or a SavedModel directory; it must have
    the sha256 the manifest recorded (for a directory, the converter's digest of
    all its files).
    """
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
        return None, "TensorFlow not installed: Keras baseline skipped"
    source = manifest.source_model
    if config.keras_model is not None:
        candidates = [config.keras_model]
    else:
        candidates = [Path(source[key]) if key == "path" else config.artifact_dir / source[key]
                      for key in ("path", "file") if isinstance(source.get(key), str) and source[key]]
        candidates.append(config.artifact_dir / "model.keras")
    expected = source.get("sha256")
    for candidate in candidates:
        if candidate.is_file() or (candidate / "saved_model.pb").is_file():
            from convert.source import file_sha256  # the digest the converter recorded, files and directories

            if expected and file_sha256(candidate) != expected:
                return None, (f"{candidate} is not the model these artifacts were converted from (sha256 differs "
                              "from the manifest): Keras baseline skipped")
            return candidate, None
    where = ", ".join(str(c) for c in candidates)
    return None, f"source Keras model not found ({where}): Keras baseline skipped; pass --keras-model"


def _pick(manifest: Manifest, fmt: str) -> ArtifactRecord | None:
    """The artifact of ``fmt`` a device would most likely ship: int8 first."""
    arts = sorted((a for a in manifest.artifacts if a.format == fmt),
                  key=lambda a: (a.precision != "int8", a.quantization not in ("full_integer", "static_qdq"), a.name))
    return arts[0] if arts else None


def compile_bytecode() -> None:
    """Compile edge_runtime's and this package's modules to ``.pyc``, as ``pip install`` does.

    A wheel installed on a device has its bytecode compiled at install time, like the
    LiteRT and ONNX Runtime packages it is compared with. A source checkout run with
    ``PYTHONDONTWRITEBYTECODE`` (or from a read-only tree) would otherwise recompile
    every edge_runtime module in every cold-start child and charge the runtime for
    a cost no installed copy pays.
    """
    import compileall

    import edge_runtime

    for package in (edge_runtime, sys.modules[__package__]):
        for directory in package.__path__:
            compileall.compile_dir(directory, quiet=1)


def _cold_start_pairs(manifest: Manifest, notes: list[str]) -> list[tuple[ArtifactRecord, str]]:
    """(artifact, bare subject) to compare: the int8 artifact of each format, on its installed runtime."""
    pairs = []
    for fmt, bares in (("tflite", ("litert", "tflite_runtime")), ("onnx", ("onnxruntime",))):
        art = _pick(manifest, fmt)
        if art is None:
            continue
        bare = next((b for b in bares if importlib.util.find_spec(
            baselines.TFLITE_INTERPRETERS.get(b, b).split(".")[0])), None)
        if bare is None:
            notes.append(f"cold start of {art.name}: none of {', '.join(bares)} is installed, skipped")
            continue
        pairs.append((art, bare))
    return pairs


def measure_cold_start(config: BenchConfig, manifest: Manifest, inputs_path: Path,
                       notes: list[str]) -> list[dict[str, Any]]:
    """edge_runtime vs bare LiteRT / ONNX Runtime cold starts, alternated, one record per process.

    Each repeat runs edge_runtime and the bare subject back to back, in alternating
    order (A B, B A, ...), so that machine drift hits both alike. The bare subject
    gets the artifact's preprocessing constants, as a user's script has them
    written in; both classify the first sample, and a different answer becomes a note.
    """
    pairs = _cold_start_pairs(manifest, notes)
    compile_bytecode()
    records = []
    # Repeat -1 is a warm-up, not recorded: whichever child runs first would otherwise
    # also pay for reading numpy and the runtimes' shared libraries into the page cache.
    for repeat in range(-1, config.cold_repeats):
        for art, bare in pairs:
            pre = manifest.preprocessing_for(art)
            common = {"artifact": str(config.artifact_dir / art.file), "images": str(inputs_path), "threads": None}
            specs = [{"subject": "edge_runtime", "backend": "auto", **common},
                     {"subject": bare, **common, "scale": pre.scale, "offset": pre.offset, "mean": pre.mean,
                      "std": pre.std, "shape": pre.model_input_shape}]
            answers = {}
            for spec in (specs if repeat % 2 == 0 else specs[::-1]):
                subject = spec["subject"]
                try:
                    result = coldstart.run_in_child(spec)
                except RuntimeError as exc:
                    notes.append(f"cold start {subject} on {art.name} failed: {exc}")
                    continue
                answers[subject] = result["top1"]
                if repeat < 0:
                    continue
                label = subject if subject == "edge_runtime" else f"bare_{subject}"
                records.append({"kind": "cold_start", "subject": label, "artifact": art.name, "format": art.format,
                                "precision": art.precision, "backend": result["backend"], "repeat": repeat,
                                **{k: v for k, v in result.items() if k not in ("subject", "backend", "top1")}})
                progress(f"cold start {label:<18} {art.name:<18} total={result['total_ms']:.1f} ms "
                         f"(import {result['import_ms']:.1f}, load {result['load_ms']:.1f}, first "
                         f"{result['first_inference_ms']:.2f}; CPU {result['cpu_ms']:.1f}) peak RSS "
                         f"{result['peak_rss_bytes'] / 2**20:.1f} MiB")
            if len(set(answers.values())) > 1:
                notes.append(f"cold start on {art.name}: edge_runtime and the bare {bare} lines classify the first "
                             f"sample differently ({answers})")
    return records


def measure_keras(config: BenchConfig, manifest: Manifest, samples: SampleSet, inputs_path: Path,
                  notes: list[str]) -> list[dict[str, Any]]:
    """Keras cold start, then warm ``model(x)`` / ``model.predict(x)``, in one TensorFlow process.

    The Keras child classifies every benchmark input with the manifest's
    preprocessing; its top-1 classes must be those ``samples.npz`` recorded from the
    same model at conversion, else a note says the baseline did different work.
    """
    source, reason = keras_source(config, manifest)
    if source is None:
        notes.append(reason or "Keras baseline skipped")
        progress(reason or "Keras baseline skipped")
        return []
    progress(f"Keras baseline from {source} (fresh process; importing TensorFlow takes a while)")
    spec = {"subject": "keras", "artifact": str(source), "artifact_dir": str(config.artifact_dir),
            "images": str(inputs_path), "batch_sizes": config.batch_sizes, "policy": config.policy.to_dict(),
            "predict_policy": config.keras_predict_policy.to_dict()}
    try:
        result = coldstart.run_in_child(spec, timeout=1800.0)
    except RuntimeError as exc:
        notes.append(f"Keras baseline failed: {exc}")
        return []
    if samples.probabilities is not None:
        expected = repeat_to(samples.probabilities.argmax(axis=1), len(result["all_top1"]))
        agree = float(np.mean(np.asarray(result["all_top1"]) == expected))
        if agree < 1.0:
            notes.append(f"the Keras baseline agrees with the Keras answers recorded in {samples.source} on only "
                         f"{agree:.1%} of top-1 classes: it is not running the same model on the same inputs")
    records = [{"kind": "cold_start", "subject": "keras", "artifact": "keras", "format": "keras",
                "precision": "float32", "backend": result["backend"], "repeat": 0,
                **{k: v for k, v in result.items() if k not in ("subject", "backend", "latency", "top1", "all_top1")}}]
    for rec in result.get("latency", []):
        records.append(_latency_record(rec["subject"], None, result["backend"], None,
                                       {**rec["stats"], "batch_size": rec["batch_size"]}))
    return records


COLD_FIELDS = ("import_ms", "load_ms", "first_inference_ms", "total_ms", "wall_ms", "cpu_ms", "peak_rss_bytes")


def cold_start_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median of each cold-start phase, CPU time and peak RSS per (subject, artifact), with the spread of totals."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        if rec["kind"] == "cold_start":
            groups.setdefault((rec["subject"], rec["artifact"]), []).append(rec)
    rows = []
    for (subject, artifact), recs in groups.items():
        row: dict[str, Any] = {"subject": subject, "artifact": artifact, "backend": recs[0]["backend"],
                               "repeats": len(recs)}
        for key in COLD_FIELDS:
            row[key] = median([r[key] for r in recs])
        row["total_ms_min"] = min(r["total_ms"] for r in recs)
        row["total_ms_max"] = max(r["total_ms"] for r in recs)
        rows.append(row)
    return rows


def cold_start_ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """edge_runtime / bare runtime per artifact: medians, minimums and the spread of the alternated pairs.

    ``total_ratio`` (median total / median total) and ``rss_ratio`` are the
    acceptance figures; ``total_ratio_min`` (fastest / fastest) and ``cpu_ratio``
    (CPU time, which waiting for a busy CPU does not inflate) show how much of a
    difference is noise; ``pair_ratio_low`` / ``pair_ratio_high`` are the extremes
    of the ratios within one alternated pair.
    """
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for rec in records:
        if rec["kind"] == "cold_start" and rec["subject"] != "keras":
            by.setdefault((rec["subject"], rec["artifact"]), {})[rec["repeat"]] = rec
    rows = []
    for (subject, artifact), bare in by.items():
        runtime = by.get(("edge_runtime", artifact))
        if subject == "edge_runtime" or not runtime:
            continue
        repeats = sorted(set(runtime) & set(bare))
        if not repeats:
            continue
        mine, theirs = [runtime[r] for r in repeats], [bare[r] for r in repeats]

        def ratio(key: str, reduce: Callable[[list[float]], float] = statistics.median) -> float:
            return reduce([r[key] for r in mine]) / reduce([r[key] for r in theirs])

        pair = [a["total_ms"] / b["total_ms"] for a, b in zip(mine, theirs)]
        rows.append({"artifact": artifact, "bare": subject, "pairs": len(repeats),
                     "total_ratio": ratio("total_ms"), "total_ratio_min": ratio("total_ms", min),
                     "pair_ratio_median": statistics.median(pair), "pair_ratio_low": min(pair),
                     "pair_ratio_high": max(pair), "cpu_ratio": ratio("cpu_ms"), "wall_ratio": ratio("wall_ms"),
                     "rss_ratio": ratio("peak_rss_bytes")})
    return rows


def runtime_ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """edge_runtime p50 / hand-written p50 for every measured combination (<= 1.0 is the goal)."""
    index = {(r["subject"], r["artifact"], r["backend"], r["batch_size"], r["threads"]): r
             for r in records if r["kind"] == "latency"}
    rows = []
    for (subject, artifact, backend, batch, threads), rt in index.items():
        base = index.get(("baseline", artifact, backend, batch, threads))
        if subject != "edge_runtime" or base is None:
            continue
        rows.append({"artifact": artifact, "precision": rt["precision"], "backend": backend, "batch_size": batch,
                     "threads": threads, "runtime_p50_ms": rt["p50_ms"], "baseline_p50_ms": base["p50_ms"],
                     "ratio_p50": rt["p50_ms"] / base["p50_ms"],
                     "ratio_mean": rt["mean_ms"] / base["mean_ms"]})
    return rows


def _target(name: str, value: float | None, higher_is_better: bool, detail: str) -> dict[str, Any]:
    target = TARGETS[name]
    passed = None if value is None else (value >= target if higher_is_better else value <= target)
    return {"value": value, "target": target, "comparison": ">=" if higher_is_better else "<=",
            "passed": passed, "detail": detail}


def summarize_run(records: list[dict[str, Any]], artifacts: list[dict[str, Any]],
                  ratios: list[dict[str, Any]], cold_ratios: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline facts of ``report.md`` and the acceptance ratios, from the records."""
    lat = [r for r in records if r["kind"] == "latency"]
    rt1 = [r for r in lat if r["subject"] == "edge_runtime" and r["batch_size"] == 1]
    fastest = min(rt1, key=lambda r: r["p50_ms"], default=None)
    fastest_int8 = min((r for r in rt1 if r["precision"] == "int8"), key=lambda r: r["p50_ms"], default=None)
    within = [a for a in artifacts if a["gate_passed"] and a["bytes"]]
    smallest = min(within, key=lambda a: a["bytes"], default=None)
    keras = {r["subject"]: r for r in lat if r["subject"].startswith("keras_") and r["batch_size"] == 1}

    def speedup(subject: str) -> float | None:
        if fastest_int8 is None or subject not in keras:
            return None
        return keras[subject]["p50_ms"] / fastest_int8["p50_ms"]

    int8_ratios = [r for r in ratios if r["batch_size"] == 1 and r["precision"] == "int8"
                   and r["backend"] in ("litert", "onnxruntime")]
    worst = max(int8_ratios, key=lambda r: r["ratio_p50"], default=None)
    cold = next((c for c in cold_ratios if c["bare"] == "bare_litert"), None)
    spread = (f" ({cold['artifact']}, {cold['pairs']} alternated pairs; fastest/fastest {cold['total_ratio_min']:.3f}, "
              f"CPU time {cold['cpu_ratio']:.3f}, pairs {cold['pair_ratio_low']:.2f}-{cold['pair_ratio_high']:.2f})"
              if cold else "")
    fast_name = f"{fastest_int8['artifact']} / {fastest_int8['backend']}" if fastest_int8 else "n/a"
    acceptance = {
        "speedup_vs_keras_call": _target("speedup_vs_keras_call", speedup("keras_call"), True,
                                         f"Keras model(x) p50 / {fast_name} p50 at batch 1"),
        "speedup_vs_keras_predict": _target("speedup_vs_keras_predict", speedup("keras_predict"), True,
                                            f"Keras model.predict(x) p50 / {fast_name} p50 at batch 1"),
        "runtime_vs_baseline_batch1_int8": _target(
            "runtime_vs_baseline_batch1_int8", worst["ratio_p50"] if worst else None, False,
            "worst edge_runtime/hand-written p50 ratio over LiteRT and ONNX Runtime int8 artifacts at batch 1"
            + (f" ({worst['artifact']} / {worst['backend']}, threads={worst['threads']})" if worst else "")),
        "cold_start_ratio_vs_bare_litert": _target(
            "cold_start_ratio_vs_bare_litert", cold["total_ratio"] if cold else None, False,
            "edge_runtime / bare LiteRT median import+load+first inference" + spread),
        "cold_start_rss_ratio_vs_bare_litert": _target(
            "cold_start_rss_ratio_vs_bare_litert", cold["rss_ratio"] if cold else None, False,
            "edge_runtime / bare LiteRT median peak RSS after the first inference"
            + (f" ({cold['artifact']})" if cold else "")),
    }
    return {
        "fastest_batch1": fastest and {k: fastest[k] for k in ("artifact", "backend", "threads", "p50_ms")},
        "fastest_int8_batch1": fastest_int8 and {k: fastest_int8[k] for k in ("artifact", "backend", "threads",
                                                                              "p50_ms")},
        "smallest_within_gate": smallest and {k: smallest[k] for k in ("name", "bytes", "accuracy", "precision")},
        "keras_batch1_p50_ms": {k: v["p50_ms"] for k, v in keras.items()},
        "acceptance": acceptance,
    }


def _busy_note(machine: dict[str, Any]) -> str | None:
    """A warning when other work competed for the CPU or the SoC throttled during the run."""
    cores = machine.get("usable_cores") or 1
    loads = [state["load_average"][0] for state in (machine["state"], machine["state_after"])
             if state.get("load_average")]
    problems = []
    if loads and max(loads) > cores:
        problems.append(f"the 1-minute load average reached {max(loads):.1f} on {cores} usable cores")
    flags = machine["state_after"].get("throttled_flags")
    if flags:
        problems.append("the Raspberry Pi reported " + ", ".join(flags))
    if not problems:
        return None
    return ("machine was not idle: " + "; ".join(problems) + ". Absolute latencies are pessimistic; the "
            "edge_runtime / hand-written ratios were measured alternately and stay comparable")


def run_benchmarks(config: BenchConfig, manifest: Manifest, parity: ParityRecord | None) -> dict[str, Any]:
    """Measure everything ``config`` asks for and return the ``results.json`` document.

    Parameters
    ----------
    config
        Batch sizes, threads, timing policy and where the artifacts are.
    manifest, parity
        As read by :func:`load_manifest` / :func:`load_parity`.

    Returns
    -------
    dict
        ``schema_version``, ``created``, ``mode``, ``config``, ``machine``
        (with ``state`` before and ``state_after``), ``input`` (what one sample
        is), ``artifacts``, ``records`` (one per measurement: ``kind``
        ``latency`` or ``cold_start``), ``cold_start`` (medians),
        ``cold_start_ratios``, ``ratios``, ``summary``, ``notes`` and
        ``digit_photos`` (:func:`benchmarks.digit_photos.measure_digit_photos`).
    """
    started = time.perf_counter()
    notes: list[str] = ["edge_runtime's `tensorflow` backend is not benchmarked: it would load TensorFlow into the "
                        "benchmark process; Keras is measured in a process of its own instead"]
    if config.quick:
        notes.append("--quick: short timing windows, batch sizes "
                     f"{config.batch_sizes}, threads {config.threads}, {config.cold_repeats} cold-start pairs; "
                     "percentiles are less stable than in a full run")
    if parity is None:
        notes.append("parity.json not found: accuracy columns are empty and no artifact counts as within the gate")
    machine = machine_info()
    samples = benchmark_samples(config.artifact_dir, manifest)
    inputs = repeat_to(samples.inputs, max(config.batch_sizes))
    with tempfile.TemporaryDirectory(prefix="keras2edge-bench-") as tmp:
        inputs_path = Path(tmp) / "inputs.npy"
        np.save(inputs_path, inputs)
        progress(f"latency: {len(manifest.artifacts)} artifacts, {manifest.input.describe()} from {samples.source}, "
                 f"batch sizes {config.batch_sizes}, threads {config.threads}")
        records = measure_latency(config, manifest, inputs, notes)
        progress(f"cold start: {config.cold_repeats} fresh process(es) per subject")
        records += measure_cold_start(config, manifest, inputs_path, notes)
        records += measure_keras(config, manifest, samples, inputs_path, notes)
    progress("digit photos: accuracy on photo-like JPEGs and the digit step's time")
    photos = digit_photos.measure_digit_photos(config.artifact_dir, manifest, config.quick)
    machine["state_after"] = thermal_state()
    busy = _busy_note(machine)
    if busy:
        notes.append(busy)
    artifacts = artifact_summaries(manifest, parity)
    ratios = runtime_ratios(records)
    cold = cold_start_summary(records)
    cold_ratios = cold_start_ratios(records)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "keras2edge.benchmarks",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if config.quick else "default",
        "duration_s": time.perf_counter() - started,
        "config": {"artifact_dir": str(config.artifact_dir), "batch_sizes": config.batch_sizes,
                   "threads": config.threads, "policy": config.policy.to_dict(),
                   "keras_predict_policy": config.keras_predict_policy.to_dict(),
                   "cold_repeats": config.cold_repeats,
                   "source_model": manifest.source_model},
        "machine": machine,
        "input": {**manifest.input.to_json(), "description": manifest.input.describe(), "samples": samples.source},
        "artifacts": artifacts,
        "keras_accuracy": parity.keras_accuracy if parity is not None else None,
        "digit_photos": photos,
        "records": records,
        "cold_start": cold,
        "cold_start_ratios": cold_ratios,
        "ratios": ratios,
        "summary": summarize_run(records, artifacts, ratios, cold_ratios),
        "notes": notes,
    }
