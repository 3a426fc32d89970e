"""The SDK's own types: columns, batches, violations and outputs, as plain Python.

Nothing here touches the WebAssembly contract, so a plugin's logic can be tested with
CPython alone (`python3 -m unittest`)."""

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

INT64 = "int64"
FLOAT64 = "float64"
BOOLEAN = "boolean"
TEXT = "text"
TIMESTAMP_MS = "timestamp-ms"
TYPES = (INT64, FLOAT64, BOOLEAN, TEXT, TIMESTAMP_MS)

WARN = "warn"
REJECT = "reject"
CRITICAL = "critical"
SEVERITIES = (WARN, REJECT, CRITICAL)


@dataclass(frozen=True)
class ColumnDef:
    """A column a plugin reads or writes."""

    name: str
    type: str
    nullable: bool = True

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"column {self.name!r}: type {self.type!r} is not one of {', '.join(TYPES)}")


def column(name: str, type: str, nullable: bool = True) -> ColumnDef:
    """A column named `name` of `type` (weir.INT64, FLOAT64, BOOLEAN, TEXT, TIMESTAMP_MS)."""
    return ColumnDef(name, type, nullable)


class Batch:
    """Events, column by column: `batch["fare"]` is a list with None for a null."""

    def __init__(self, columns: Dict[str, list], length: Optional[int] = None):
        self._columns = columns
        self._len = length if length is not None else len(next(iter(columns.values()), []))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, name: str) -> list:
        try:
            return self._columns[name]
        except KeyError:
            raise KeyError(f"the batch has no column {name!r}; it has {', '.join(self._columns)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    def names(self) -> List[str]:
        return list(self._columns)

    def rows(self) -> Iterable[dict]:
        """Each row as a dict: convenient, and slower than working a column at a time."""
        names = list(self._columns)
        for values in zip(*self._columns.values()):
            yield dict(zip(names, values))


@dataclass
class Records:
    """Raw records for a parser: payloads and keys as bytes (a key may be None)."""

    payloads: List[bytes]
    keys: List[Optional[bytes]]
    timestamps: List[int]
    partitions: List[int]
    offsets: List[int]

    def __len__(self) -> int:
        return len(self.payloads)


@dataclass
class Violation:
    """A rule a row broke. `severity` is weir.WARN, REJECT (the default) or CRITICAL."""

    row: int
    rule: str
    message: str
    severity: str = REJECT

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"violation {self.rule!r}: severity {self.severity!r} is not warn, reject or critical")


@dataclass
class RecordError:
    """An input record or row that produced nothing, and why; it goes to the dead letters."""

    index: int
    reason: str


@dataclass
class Output:
    """What a parser or transform returns: the output columns by name, the input record
    each output row came from (default: row i from input i), and the inputs that failed."""

    columns: Dict[str, Sequence]
    sources: Optional[Sequence[int]] = None
    errors: List[RecordError] = field(default_factory=list)

    def length(self) -> int:
        lengths = {len(values) for values in self.columns.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{n}: {len(v)}" for n, v in self.columns.items())
            raise ValueError(f"the output's columns differ in length ({sizes})")
        return lengths.pop() if lengths else 0
