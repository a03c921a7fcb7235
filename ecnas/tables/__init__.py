"""Energy tables: the contract's schema, Parquet/CSV IO with metadata, checks
(EC-NAS import and export are :mod:`ecnas.interop`).

The one data contract between the rooms (docs/architecture.md): one row per checkpoint of a
training run, joules everywhere, facility factors recorded as metadata and never folded into
``energy_j``. ``ecnas.tables.checks.run_checks`` is the consistency report.
"""

from __future__ import annotations

from ecnas.tables.io import read_table, write_table
from ecnas.tables.metadata import get_metadata, set_metadata
from ecnas.tables.schema import (
    COLUMN_NAMES,
    COLUMNS,
    COMPONENT_COLUMNS,
    ROW_KEYS,
    RUN_KEYS,
    SOURCES,
    Column,
    check_schema,
    empty_table,
    validate,
)

__all__ = [
    "COLUMNS", "COLUMN_NAMES", "COMPONENT_COLUMNS", "ROW_KEYS", "RUN_KEYS", "SOURCES", "Column",
    "check_schema", "empty_table", "get_metadata", "read_table", "set_metadata", "validate",
    "write_table",
]
