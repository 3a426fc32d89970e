"""The four plugin kinds a project subclasses. A project defines one subclass; `weir
plugin build` exports it (see `_exports.py`).

Each kind's constructor takes the `Config`; it sets the columns it reads (`inputs`) and,
where the kind writes columns, `outputs`, as attributes (on the class or the instance)."""

from typing import Any, Iterable, List, Optional, Sequence

from ._types import Batch, ColumnDef, Output, Records, Violation

_registered: dict = {}


class _Kind:
    kind = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__ != __name__:
            _registered.setdefault(cls.kind, []).append(cls)

    def __init__(self, config):
        self.config = config


def registered(kind: str) -> type:
    """The project's one class of `kind`."""
    found = _registered.get(kind, [])
    if len(found) != 1:
        names = ", ".join(c.__qualname__ for c in found) or "none"
        raise RuntimeError(f"the project must define exactly one weir_sdk.{kind.title()} subclass; found {names}")
    return found[0]


class Validator(_Kind):
    """Judges rows: `validate` yields (or returns) a `Violation` per broken rule."""

    kind = "validator"
    inputs: List[ColumnDef] = []

    def validate(self, batch: Batch) -> Iterable[Violation]:
        raise NotImplementedError


class Transform(_Kind):
    """Maps, filters or flat-maps rows: `apply` returns an `Output` with `outputs`' columns."""

    kind = "transform"
    inputs: List[ColumnDef] = []
    outputs: List[ColumnDef] = []

    def apply(self, batch: Batch) -> Output:
        raise NotImplementedError


class Parser(_Kind):
    """Turns raw records into events: `parse` returns an `Output` with `outputs`' columns;
    `event_time` names the TIMESTAMP_MS output that holds each event's time."""

    kind = "parser"
    outputs: List[ColumnDef] = []
    event_time: str = ""

    def parse(self, records: Records) -> Output:
        raise NotImplementedError


class Aggregator(_Kind):
    """Folds rows into per-group state and emits a row per state. A state is any value
    `json` can write; weir stores it between batches and checkpoints, and gives it back to
    a newer version through `migrate` when `state_version` grows."""

    kind = "aggregator"
    inputs: List[ColumnDef] = []
    outputs: List[ColumnDef] = []
    state_version: int = 1

    def create(self) -> Any:
        raise NotImplementedError

    def fold(self, states: List[Any], batch: Batch, groups: Sequence[int]) -> List[Any]:
        """Row i of `batch` goes into `states[groups[i]]`; returns the new states in order."""
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def emit(self, states: List[Any]) -> dict:
        """One output row per state: a dict of the output columns' lists."""
        raise NotImplementedError

    def migrate(self, from_version: int, state: Any) -> Any:
        raise ValueError(f"no migration from state version {from_version} to {self.state_version}")


def log(level: str, message: str) -> None:
    """A line in weir's log, tagged with the plugin's name: level is trace, debug, info,
    warn or error. Outside a component (in unit tests) it prints."""
    try:
        from wit_world.imports import host
    except ImportError:
        print(f"[{level}] {message}")
        return
    host.log(getattr(host.LogLevel, level.upper()), message)
