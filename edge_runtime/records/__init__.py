"""The project's file formats, one typed record and one module each.

=================  =====================================  ==============================
file               module                                 written by -> read by
=================  =====================================  ==============================
``manifest.json``  :mod:`edge_runtime.records.manifest`   convert -> runtime, parity,
                                                          bundle, benchmarks, mcu
``parity.json``    :mod:`edge_runtime.records.parity`     convert parity -> bundle,
                                                          benchmarks
``training.json``  :mod:`edge_runtime.records.training`   train -> convert
``bundle.json``    :mod:`edge_runtime.records.bundle`     convert bundle -> self-test
=================  =====================================  ==============================

Each record is an immutable ``NamedTuple`` with ``from_json`` (validates every field
it reads and fails with one line naming the file and the key), ``to_json``, and
``read`` / ``write`` for the file itself; each carries a schema version. No other
code parses or writes these files. They live in ``edge_runtime`` and need only the
standard library, so a device without numpy or TensorFlow can read them.
"""
