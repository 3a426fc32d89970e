"""A plugin's config: the pipeline's table for it, read with types."""

import dataclasses
from typing import Any, Dict


class ConfigError(Exception):
    """A config that cannot be used; `weir` shows the message, which should name the key."""


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text", list: "a list", dict: "a table"}


def _check(key: str, value: Any, ty: type) -> Any:
    if ty is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if ty is int and isinstance(value, bool) or not isinstance(value, ty):
        raise ConfigError(f"config.{key}: expected {_NAMES.get(ty, ty.__name__)}, got {value!r}")
    return value


class Config:
    """The config table. `get(key, type, default)` reads one key; `parse(SomeDataclass)`
    reads them all into a dataclass, refusing unknown keys and wrong types by name."""

    def __init__(self, values: Dict[str, Any]):
        self.values = values

    def get(self, key: str, ty: type = str, default: Any = ...) -> Any:
        if key not in self.values:
            if default is ...:
                raise ConfigError(f"config.{key}: required")
            return default
        return _check(key, self.values[key], ty)

    def parse(self, cls: type) -> Any:
        if not dataclasses.is_dataclass(cls):
            raise TypeError("Config.parse takes a dataclass")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(self.values) - set(fields))
        if unknown:
            raise ConfigError(f"config.{unknown[0]}: unknown key; the keys are {', '.join(fields)}")
        args = {}
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if name in self.values:
                ty = f.type if isinstance(f.type, type) else None
                args[name] = _check(name, self.values[name], ty) if ty in _NAMES else self.values[name]
            elif required:
                raise ConfigError(f"config.{name}: required")
        return cls(**args)
