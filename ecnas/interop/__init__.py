"""EC-NAS's format, both ways: results trees (``results.json``), TFRecord files (NAS-Bench-101
framing) and the ``ModelMetricsEnergy`` protobuf, read into energy tables
(:func:`import_ecnas`) and written back from them (:func:`export_ecnas_tfrecord`).

One codec: :mod:`.proto` (the message), :mod:`.crc32c` and :mod:`.tfrecord` (the framing and
its one writer, :func:`write_records`), :mod:`.record` (message fields ↔ table columns),
:mod:`.convert` (runs → table), :mod:`.ecnas_tree` and :mod:`.importer` (reading),
:mod:`.export_tfrecord` (writing). Names load on first use.
"""

from __future__ import annotations

from ecnas._lazy import lazy_exports

_EXPORTS = {
    "import_ecnas": "ecnas.interop.importer",
    "check_device_id": "ecnas.interop.convert",
    "export_ecnas_tfrecord": "ecnas.interop.export_tfrecord",
    "ExportReport": "ecnas.interop.export_tfrecord",
    "EcnasRecord": "ecnas.interop.tfrecord",
    "iter_records": "ecnas.interop.tfrecord",
    "read_ecnas_records": "ecnas.interop.tfrecord",
    "records_to_table": "ecnas.interop.tfrecord",
    "write_records": "ecnas.interop.tfrecord",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
