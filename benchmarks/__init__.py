"""keras2edge benchmarks: latency, cold start, memory and the report users read.

``python -m benchmarks ARTIFACT_DIR --out DIR`` measures every artifact in a
``convert`` output directory on every installed backend, against a hand-written
interpreter loop and against Keras, and writes ``results.json``, ``results.csv``,
``report.md`` and charts. This package imports nothing heavy at import time: the
cold-start child (:mod:`benchmarks.coldstart`) imports it before its clock starts.
"""
