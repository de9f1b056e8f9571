"""Turn a ``results.json`` document into the files a person reads.

``report.md`` leads with the answers a user picking an artifact wants (fastest at
batch 1, smallest within the accuracy gate, speed-up over Keras, the acceptance
ratios), then the tables they came from. ``results.csv`` has one row per measurement
for spreadsheets; the PNG charts show latency per sample against batch size and size
against accuracy. ``--compare`` adds a section with another machine's numbers side by
side. A "sample" is what the model classifies once: an image (of any size, grayscale
or RGB) or a feature vector; tables and charts name it as the results do.
Everything here is pure formatting of the document: no measurement happens.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.runner import SCHEMA_VERSION
from edge_runtime.atomic import write_bytes, write_json, write_text
from edge_runtime.errors import DataError

CSV_FIELDS = ("kind", "subject", "artifact", "format", "precision", "backend", "threads", "batch_size", "count",
              "first_ms", "min_ms", "max_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p99_ms", "p50_ms_per_sample",
              "throughput_sps", "repeat", "import_ms", "load_ms", "first_inference_ms", "total_ms", "wall_ms",
              "cpu_ms", "peak_rss_bytes", "rss_source")
LATENCY_CHART = "latency_vs_batch.png"
KERAS_LABELS = {"keras_call": "Keras model(x)", "keras_predict": "Keras model.predict(x)"}
SIZE_CHART = "size_vs_accuracy.png"


def load_results(path: Path) -> dict[str, Any]:
    """Read another run's ``results.json`` for ``--compare``, checking its schema.

    Raises
    ------
    DataError
        Missing, unreadable, not a benchmarks results file, or another schema version.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"--compare file '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read --compare file '{path}': {exc}") from None
    if not isinstance(doc, dict) or doc.get("tool") != "keras2edge.benchmarks" or "records" not in doc:
        raise DataError(f"'{path}' is not a keras2edge benchmarks results.json")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"'{path}' has schema_version {doc.get('schema_version')!r}; this tool reads {SCHEMA_VERSION}")
    # Check everything the comparison reads now, not after a whole benchmark has run.
    required = {
        "latency": ("kind", "subject", "artifact", "backend", "p50_ms"),
        "cold_start": ("subject", "artifact", "total_ms", "peak_rss_bytes"),
    }
    if not isinstance(doc.get("machine"), dict) or not isinstance(doc.get("records"), list) \
            or not isinstance(doc.get("cold_start"), list):
        raise DataError(f"'{path}' lacks machine, records or cold_start; it is not a complete results.json")
    latency = [r for r in doc["records"] if isinstance(r, dict) and r.get("kind") == "latency"]
    for what, rows in (("latency", latency), ("cold_start", doc["cold_start"])):
        for row in rows:
            missing = [k for k in required[what] if not isinstance(row, dict) or k not in row]
            if missing:
                raise DataError(
                    f"'{path}': a {what} record lacks {', '.join(missing)}; it is not a complete results.json"
                )
    if any(not isinstance(r, dict) or "kind" not in r for r in doc["records"]):
        raise DataError(f"'{path}': a record lacks its kind; it is not a complete results.json")
    return doc


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return str(value)


def _ms(value: float | None) -> str:
    """Milliseconds with about three significant digits, from 8 µs calls to 4 s imports."""
    if value is None:
        return "–"
    for limit, decimals in ((0.1, 4), (1, 3), (10, 2), (100, 1)):
        if value < limit:
            return f"{value:.{decimals}f}"
    return f"{value:,.0f}"


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**20:.1f}"


def _unit(doc: dict[str, Any]) -> str:
    """What one sample is called: ``image`` for image models, ``sample`` for feature vectors."""
    return "image" if (doc.get("input") or {}).get("kind", "image") == "image" else "sample"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(machine: dict[str, Any]) -> str:
    """One line naming the machine, for headings and the comparison table."""
    board = f"{machine['board']}, " if machine.get("board") else ""
    return (f"{board}{machine.get('cpu_model')} ({machine.get('arch')}, {machine.get('usable_cores')} usable cores), "
            f"{machine.get('os')}, {machine.get('python')}")


def _summary(doc: dict[str, Any]) -> list[str]:
    s = doc["summary"]
    out = ["## Summary", ""]
    f = s.get("fastest_batch1")
    if f:
        out.append(f"- **Fastest at batch 1:** `{f['artifact']}` on {f['backend']} (threads={f['threads']}), "
                   f"p50 {_ms(f['p50_ms'])} ms per {_unit(doc)}.")
    f8 = s.get("fastest_int8_batch1")
    if f8 and f8 != f:
        out.append(f"- **Fastest int8 artifact at batch 1:** `{f8['artifact']}` on {f8['backend']} "
                   f"(threads={f8['threads']}), p50 {_ms(f8['p50_ms'])} ms.")
    sm = s.get("smallest_within_gate")
    if sm:
        out.append(f"- **Smallest artifact within the accuracy gate:** `{sm['name']}` ({sm['bytes'] / 1024:,.1f} KiB, "
                   f"{sm['precision']}, accuracy {_fmt(sm['accuracy'], 4)}).")
    else:
        out.append("- **Smallest artifact within the accuracy gate:** none (no parity results or no artifact passed).")
    acc = s["acceptance"]
    for key, label in (("speedup_vs_keras_call", "Keras `model(x)`"), ("speedup_vs_keras_predict",
                                                                      "Keras `model.predict(x)`")):
        value = acc[key]["value"]
        if value is not None:
            out.append(f"- **Speed-up over {label} at batch 1:** {value:,.0f}× ({acc[key]['detail']}).")
        else:
            out.append(f"- **Speed-up over {label}:** not measured (see notes).")
    out += ["", "### Acceptance ratios", ""]
    rows = []
    for key, a in acc.items():
        verdict = "–" if a["passed"] is None else ("pass" if a["passed"] else "**FAIL**")
        rows.append([key, _fmt(a["value"], 4), f"{a['comparison']} {a['target']:g}", verdict, a["detail"]])
    out.append(_table(["check", "measured", "target", "result", "what"], rows))
    return out


def _artifacts(doc: dict[str, Any]) -> list[str]:
    rows = [[f"`{a['name']}`", a["format"], a["precision"], a["quantization"],
             "–" if a["bytes"] is None else f"{a['bytes'] / 1024:,.1f}", _fmt(a["accuracy"], 4),
             _fmt(a["accuracy_delta"], 3), _fmt(a["agreement"], 4), _fmt(a["gate_passed"])]
            for a in doc["artifacts"]]
    return ["## Artifacts", "",
            "Size from the manifest; accuracy and top-1 agreement with Keras from `parity.json`.", "",
            _table(["artifact", "format", "precision", "quantization", "KiB", "accuracy", "Δ vs Keras",
                    "agreement", "within gate"], rows), "", f"![size vs accuracy]({SIZE_CHART})"]


def _digit_photos(doc: dict[str, Any]) -> list[str]:
    """Accuracy on photos of handwritten digits next to plain MNIST, and the digit step's time."""
    result = doc.get("digit_photos")
    if not result:
        return []
    out = ["## Digit photos", ""]
    if result["status"] != "measured":
        out.append(f"Photo-set accuracy {result['status']}.")
    else:
        rows = [[f"`{a['name']}`", a.get("backend", "–"), _fmt(a.get("mnist_accuracy"), 4),
                 _fmt(a.get("photo_accuracy"), 4)] if "error" not in a else [f"`{a['name']}`", a["error"], "–", "–"]
                for a in result["artifacts"]]
        out += [f"{result['photos']} photo-like JPEGs of the first {result['photos']} MNIST test digits "
                f"(`benchmarks/digit_photos.py`, seed {result['seed']}: dark ink on paper, off-centre, rotated, "
                "blurred, light falling off across the page, colour cast, noise, JPEG quality 70–95), each read by "
                "`load_image` as a device reads a photo, next to the 10,000 plain MNIST test images.", "",
                _table(["artifact", "backend", "MNIST accuracy", "photo accuracy"], rows)]
    if result.get("step_ms"):
        times = ", ".join(f"{_ms(ms)} ms at {size}" for size, ms in result["step_ms"].items())
        out += ["", f"From JPEG to digit (`load_image`: reduced-scale decode, then `edge_runtime.digits`), "
                    f"median per photo: {times}."]
    return out


def _latency_rows(doc: dict[str, Any], subjects: Sequence[str]) -> list[dict[str, Any]]:
    return [r for r in doc["records"] if r["kind"] == "latency" and r["subject"] in subjects]


def _latency(doc: dict[str, Any]) -> list[str]:
    unit = _unit(doc)
    recs = _latency_rows(doc, ("edge_runtime",))
    b1 = sorted((r for r in recs if r["batch_size"] == 1), key=lambda r: r["p50_ms"])
    out = ["## Latency through edge_runtime", "",
           f"Per call, from raw {unit}s to probabilities; ms. Batch 1 (one {unit} per call), fastest first:", "",
           _table(["artifact", "backend", "threads", "p50", "p90", "p99", "mean", "std", "first", f"{unit}s/s",
                   "calls"],
                  [[f"`{r['artifact']}`", r["backend"], r["threads"], _ms(r["p50_ms"]), _ms(r["p90_ms"]),
                    _ms(r["p99_ms"]), _ms(r["mean_ms"]), _ms(r["std_ms"]), _ms(r["first_ms"]),
                    f"{r['throughput_sps']:,.0f}", r["count"]] for r in b1])]
    batches = doc["config"]["batch_sizes"]
    if len(batches) > 1:
        combos = sorted({(r["artifact"], r["backend"], r["threads"]) for r in recs}, key=str)
        index = {(r["artifact"], r["backend"], r["threads"], r["batch_size"]): r for r in recs}
        rows = []
        for combo in combos:
            cells = []
            for b in batches:
                r = index.get((*combo, b))
                cells.append("–" if r is None else f"{_ms(r['p50_ms'] / b)} ({_ms(r['p50_ms'])})")
            rows.append([f"`{combo[0]}`", combo[1], combo[2], *cells])
        out += ["", f"All batch sizes: p50 ms **per {unit}** (p50 ms per call in brackets). Per {unit}, so that "
                    f"batch sizes compare directly: a larger batch pays off where the per-{unit} time falls.", "",
                _table(["artifact", "backend", "threads", *[f"batch {b}" for b in batches]], rows)]
    out += ["", f"![p50 latency per {unit} vs batch size]({LATENCY_CHART})"]
    return out


def _ratios(doc: dict[str, Any]) -> list[str]:
    rows = [[f"`{r['artifact']}`", r["backend"], r["batch_size"], r["threads"], _ms(r["runtime_p50_ms"]),
             _ms(r["baseline_p50_ms"]), f"{r['ratio_p50']:.3f}", f"{r['ratio_mean']:.3f}"]
            for r in sorted(doc["ratios"], key=lambda r: (r["batch_size"], r["artifact"], r["backend"],
                                                           str(r["threads"])))]
    return ["## edge_runtime vs the hand-written interpreter loop", "",
            f"Both start from the same raw {_unit(doc)}s and were timed alternately in the same run "
            "(`benchmarks/baselines.py`: the manifest's preprocessing in numpy, int8 quantise with the input "
            "tensor's scale and zero point, `set_tensor`/`invoke`/`get_tensor`, dequantise; or `session.run`). "
            "Per call: both process the same batch. Ratio = edge_runtime / hand-written; below 1.0 the runtime is "
            "faster.", "",
            _table(["artifact", "backend", "batch", "threads", "runtime p50 ms", "hand-written p50 ms", "ratio p50",
                    "ratio mean"], rows)]


def _cold(doc: dict[str, Any]) -> list[str]:
    unit = _unit(doc)
    rows = [[c["subject"], f"`{c['artifact']}`", c["backend"], c["repeats"], _ms(c["import_ms"]), _ms(c["load_ms"]),
             _ms(c["first_inference_ms"]), _ms(c["total_ms"]),
             f"{_ms(c.get('total_ms_min'))}–{_ms(c.get('total_ms_max'))}", _ms(c.get("cpu_ms")), _ms(c["wall_ms"]),
             _mib(c["peak_rss_bytes"])]
            for c in doc["cold_start"]]
    out = ["## Cold start", "",
           f"Fresh process each time; medians over the repeats. import + load + first inference (one {unit}) is timed "
           "inside the process; *CPU* is the CPU time of those phases (waiting for a busy CPU does not count); "
           "*process* adds interpreter start-up as seen from outside. Peak RSS is the process's high-water mark right "
           "after the first inference. The bare subjects are the few lines a user writes with the runtime alone "
           "(`benchmarks/coldstart.py`); edge_runtime imports numpy and its backend lazily inside `load`, so compare "
           "totals rather than phases.", "",
           _table(["subject", "artifact", "backend", "runs", "import ms", "load ms", "first inference ms",
                   "total ms", "total min–max", "CPU ms", "process ms", "peak RSS MiB"], rows)]
    ratios = doc.get("cold_start_ratios") or []
    if ratios:
        out += ["", "edge_runtime / bare runtime, from the alternated pairs (edge_runtime, bare, bare, "
                    "edge_runtime, ...):", "",
                _table(["artifact", "versus", "pairs", "total (medians)", "total (minimums)", "pairs low–high",
                        "CPU time", "process", "peak RSS"],
                       [[f"`{r['artifact']}`", r["bare"], r["pairs"], f"{r['total_ratio']:.3f}",
                         f"{r['total_ratio_min']:.3f}", f"{r['pair_ratio_low']:.2f}–{r['pair_ratio_high']:.2f}",
                         f"{r['cpu_ratio']:.3f}", f"{r['wall_ratio']:.3f}", f"{r['rss_ratio']:.3f}"]
                        for r in ratios])]
    return out


def _keras(doc: dict[str, Any]) -> list[str]:
    recs = sorted(_latency_rows(doc, ("keras_call", "keras_predict")), key=lambda r: (r["subject"], r["batch_size"]))
    if not recs:
        return []
    unit = _unit(doc)
    rows = [["`model(x)`" if r["subject"] == "keras_call" else "`model.predict(x)`", r["batch_size"], _ms(r["p50_ms"]),
             _ms(r["p50_ms"] / r["batch_size"]), _ms(r["p90_ms"]), _ms(r["mean_ms"]), f"{r['throughput_sps']:,.0f}",
             r["count"]] for r in recs]
    return ["## Keras baseline", "", f"{recs[0]['backend']}, default threads, in its own process; the same raw "
            f"{unit}s with the manifest's preprocessing.", "",
            _table(["call", "batch", "p50 ms", f"p50 ms per {unit}", "p90 ms", "mean ms", f"{unit}s/s", "calls"], rows)]


def _machine(doc: dict[str, Any]) -> list[str]:
    m = doc["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    before, after = m.get("state", {}), m.get("state_after", {})
    rows = [[k, _fmt(before.get(k)), _fmt(after.get(k))] for k in before]
    return ["## Machine", "", f"- {machine_line(m)}", f"- Libraries: {libs}",
            f"- Memory: {_mib(m.get('memory_bytes'))} MiB; Raspberry Pi: {_fmt(m.get('is_raspberry_pi'))}", "",
            _table(["state", "before", "after"], rows)]


def _compare(doc: dict[str, Any], other: dict[str, Any], other_name: str) -> list[str]:
    """This run and another machine's, side by side, for measurements both made."""
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["subject"], r["artifact"], r["backend"], r.get("batch_size"), r.get("threads"))

    mine = {key(r): r for r in doc["records"] if r["kind"] == "latency"}
    theirs = {key(r): r for r in other["records"] if r["kind"] == "latency"}
    rows = []
    for k in sorted(set(mine) & set(theirs), key=str):
        a, b = mine[k], theirs[k]
        rows.append([k[0], f"`{k[1]}`", k[2], k[3], k[4], _ms(a["p50_ms"]), _ms(b["p50_ms"]),
                     f"{b['p50_ms'] / a['p50_ms']:.2f}"])
    cold_a = {(c["subject"], c["artifact"]): c for c in doc["cold_start"]}
    cold_b = {(c["subject"], c["artifact"]): c for c in other["cold_start"]}
    cold_rows = [[k[0], f"`{k[1]}`", _ms(cold_a[k]["total_ms"]), _ms(cold_b[k]["total_ms"]),
                  _mib(cold_a[k]["peak_rss_bytes"]), _mib(cold_b[k]["peak_rss_bytes"])]
                 for k in sorted(set(cold_a) & set(cold_b), key=str)]
    out = ["## Comparison with another machine", "", f"- **this run:** {machine_line(doc['machine'])}",
           f"- **other** (`{other_name}`, {other.get('created')}, {other.get('mode')}): "
           f"{machine_line(other['machine'])}", ""]
    if rows:
        out += ["Latency p50 (ms per call) of measurements both runs made; ratio = other / this.", "",
                _table(["subject", "artifact", "backend", "batch", "threads", "this", "other", "other/this"], rows)]
    else:
        out.append("The two runs share no latency measurement (different artifacts, backends or batch sizes).")
    if cold_rows:
        out += ["", _table(["cold start", "artifact", "this total ms", "other total ms", "this RSS MiB",
                            "other RSS MiB"], cold_rows)]
    return out


def render_markdown(doc: dict[str, Any], other: dict[str, Any] | None = None, other_name: str = "") -> str:
    """The whole ``report.md`` for ``doc`` (and ``other`` when comparing)."""
    out = ["# keras2edge benchmark report", "",
           f"{doc['created']} · {doc['mode']} run ({doc['duration_s']:.0f} s) · `{doc['config']['artifact_dir']}` · "
           f"{machine_line(doc['machine'])}", ""]
    if doc.get("input"):
        out += [f"Input: {doc['input']['description']} (the samples in `{doc['input']['samples']}`).", ""]
    if doc["notes"]:
        out += ["**Notes:**", ""] + [f"- {n}" for n in doc["notes"]] + [""]
    for section in (_summary, _artifacts, _digit_photos, _latency, _ratios, _cold, _keras, _machine):
        lines = section(doc)
        if lines:
            out += lines + [""]
    if other is not None:
        out += _compare(doc, other, other_name) + [""]
    return "\n".join(out)


def render_csv(doc: dict[str, Any]) -> str:
    """One row per measurement record; columns a record does not have are empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in doc["records"]:
        writer.writerow({k: ("" if rec.get(k) is None else rec.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes, in the size and resolution of every benchmark chart."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _series_colors(count: int) -> list[Any]:
    """``count`` colours, all different: tab10's, then tab20's light shades, then a spread of a colormap.

    Matplotlib's default cycle repeats after ten lines, and a benchmark of seven
    artifacts on two or three backends draws more than that.
    """
    import matplotlib

    tab20 = matplotlib.colormaps["tab20"].colors
    palette = list(tab20[0::2]) + list(tab20[1::2])
    if count <= len(palette):
        return palette[:count]
    spread = matplotlib.colormaps["nipy_spectral"]
    return [spread(0.05 + 0.9 * i / (count - 1)) for i in range(count)]


_BACKEND_MARKERS = {"litert": "o", "tflite_runtime": "D", "onnxruntime": "s", "numpy": "^"}


def latency_figure(doc: dict[str, Any], plt: Any) -> Any:
    """p50 latency per sample against batch size, one panel per thread count, one legend beside them.

    Per sample (call latency / batch size), so that batch sizes compare directly.
    Every series has its own colour (the same in every panel) and a marker per
    backend; the legend sits to the right of the panels, outside every axes.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    unit = _unit(doc)
    recs = _latency_rows(doc, ("edge_runtime", "keras_call", "keras_predict"))
    threads = sorted({r["threads"] for r in recs if r["subject"] == "edge_runtime"}, key=str)
    panels = threads or [None]
    # One colour per series, the same in every panel, so one legend serves them all.
    series = sorted({(r["artifact"], r["backend"]) for r in recs if r["subject"] == "edge_runtime"})
    keras = sorted({r["subject"] for r in recs if r["subject"] != "edge_runtime"})
    colors = dict(zip(series, _series_colors(len(series))))
    keras_styles = {"keras_call": ("black", "--"), "keras_predict": ("dimgray", ":")}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.8), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], panels):
        lines: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for r in recs:
            if r["subject"] == "edge_runtime" and r["threads"] != t:
                continue
            key = (r["artifact"], r["backend"]) if r["subject"] == "edge_runtime" else (r["subject"], "")
            lines.setdefault(key, []).append((r["batch_size"], r["p50_ms"] / r["batch_size"]))
        for key, pts in sorted(lines.items()):
            pts.sort()
            if key[1]:
                style = {"color": colors[key], "linestyle": "-", "marker": _BACKEND_MARKERS.get(key[1], "o")}
            else:
                color, linestyle = keras_styles[key[0]]
                style = {"color": color, "linestyle": linestyle, "marker": "x"}
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ms=4, linewidth=1.4, **style)
        ax.set_xscale("log", base=2)
        ax.set_xticks(doc["config"]["batch_sizes"], labels=[str(b) for b in doc["config"]["batch_sizes"]])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_title(f"edge_runtime, threads={t}" if t is not None else "latency")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(f"p50 latency per {unit} (ms)")
    handles = [Line2D([], [], color=colors[key], marker=_BACKEND_MARKERS.get(key[1], "o"), ms=4,
                      label=f"{key[0]} / {key[1]}") for key in series]
    handles += [Line2D([], [], color=keras_styles[k][0], linestyle=keras_styles[k][1], marker="x", ms=4,
                       label=KERAS_LABELS[k]) for k in keras]
    fig.tight_layout()
    if handles:  # beside the panels, never over a line
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=7, frameon=False,
                   title="artifact / backend", title_fontsize=7)
    return fig


def render_charts(doc: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes of the two charts: latency per sample vs batch size, and size vs accuracy.

    Uses matplotlib's Agg backend (no display needed on a server or a Pi).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: dict[str, bytes] = {}
    for name, figure in ((LATENCY_CHART, latency_figure), (SIZE_CHART, size_figure)):
        fig = figure(doc, plt)
        charts[name] = figure_png(fig)
        plt.close(fig)
    return charts


def size_figure(doc: dict[str, Any], plt: Any) -> Any:
    """Artifact size against parity accuracy; one colour per artifact, named in a legend beside the plot.

    Names are not written next to the points: artifacts of nearly the same size and
    accuracy (every float and int8 variant of a small model) would print over each
    other. Coinciding points are drawn largest first, so each stays visible.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    pts = [a for a in doc["artifacts"] if a["bytes"] and a["accuracy"] is not None]
    for size, (a, color) in zip(range(len(pts), 0, -1), zip(pts, _series_colors(len(pts)))):
        passed = bool(a["gate_passed"])
        ax.scatter(a["bytes"] / 1024, a["accuracy"], color=color, s=30 + 12 * size, marker="o" if passed else "X",
                   edgecolors="white", linewidths=0.8, zorder=3, clip_on=False,
                   label=a["name"] + ("" if passed else " (outside the gate)"))
    if doc.get("keras_accuracy") is not None:
        ax.axhline(doc["keras_accuracy"], color="black", linestyle="--", linewidth=1, label="Keras model")
    ax.set_xlim(left=0)
    bottom, top = ax.get_ylim()
    if top > 1.0:  # axis padding only: no accuracy lies above 100 %
        ax.set_ylim(top=min(top, 1.0 + 0.05 * (top - bottom)))
    ax.set_xlabel("artifact size (KiB)")
    ax.set_ylabel("test accuracy (parity.json)")
    ax.set_title("size vs accuracy (X: outside the parity gate)" if pts else "size vs accuracy: no parity.json")
    ax.grid(True, which="both", alpha=0.3)
    if pts or doc.get("keras_accuracy") is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def write_outputs(directory: Path, doc: dict[str, Any], other: dict[str, Any] | None = None,
                  other_name: str = "") -> list[Path]:
    """Write results.json, results.csv, report.md and the charts into ``directory``.

    ``directory`` is the staging directory of :func:`edge_runtime.atomic.staged_dir`,
    so a failure here leaves no partial report behind.
    """
    write_json(directory / "results.json", doc)
    write_text(directory / "results.csv", render_csv(doc))
    write_text(directory / "report.md", render_markdown(doc, other, other_name))
    for name, data in render_charts(doc).items():
        write_bytes(directory / name, data)
    return sorted(directory.iterdir())
