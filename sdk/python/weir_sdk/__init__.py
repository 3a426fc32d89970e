"""weir's SDK for plugins written in Python.

A plugin is a class with one method per batch; columns come and go as Python lists, with
None for a null. The WebAssembly contract (`wit/`) stays behind this module:
`weir plugin build` compiles the project with componentize-py and this package.

    import weir_sdk as weir

    class FareRules(weir.Validator):
        def __init__(self, config: weir.Config):
            self.max_fare = config.get("max_fare", float, 500.0)
            self.inputs = [weir.column("fare", weir.FLOAT64)]

        def validate(self, batch: weir.Batch):
            for row, fare in enumerate(batch["fare"]):
                if fare is not None and fare > self.max_fare:
                    yield weir.Violation(row, "fare-max", f"fare {fare} is above {self.max_fare}")
"""

from ._types import (
    BOOLEAN,
    FLOAT64,
    INT64,
    TEXT,
    TIMESTAMP_MS,
    CRITICAL,
    REJECT,
    WARN,
    Batch,
    ColumnDef,
    Output,
    Records,
    RecordError,
    Violation,
    column,
)
from ._config import Config, ConfigError
from ._kinds import Aggregator, Parser, Transform, Validator, log

__all__ = [
    "BOOLEAN",
    "FLOAT64",
    "INT64",
    "TEXT",
    "TIMESTAMP_MS",
    "CRITICAL",
    "REJECT",
    "WARN",
    "Aggregator",
    "Batch",
    "ColumnDef",
    "Config",
    "ConfigError",
    "Output",
    "Parser",
    "Records",
    "RecordError",
    "Transform",
    "Validator",
    "Violation",
    "column",
    "log",
]
