"""Declarative data-quality rules: `plugins/rules-validator` in Python, with the same
config and the same violations.

    [[validators]]
    plugin = "rules_validator_py"
    config.rules = [
      { name = "city-present", field = "city", type = "text", required = true },
      { name = "fare-non-negative", field = "fare", min = 0.0 },
    ]

A rule checks one field with any of `required`, `min`/`max` and `allowed`. A field's type
comes from `type` on any of its rules, or else from the checks: a range means float64, a
list of allowed values means text. Severity defaults to reject.
"""

import json
from dataclasses import dataclass
from typing import List, Optional

import weir_sdk as weir

TYPES = {"int64": weir.INT64, "float64": weir.FLOAT64, "boolean": weir.BOOLEAN, "text": weir.TEXT,
         "timestamp": weir.TIMESTAMP_MS, "timestamp-ms": weir.TIMESTAMP_MS}


@dataclass
class RuleConfig:
    field: str
    name: Optional[str] = None
    type: Optional[str] = None
    required: bool = False
    min: Optional[float] = None
    max: Optional[float] = None
    allowed: Optional[List[str]] = None
    severity: str = weir.REJECT


@dataclass
class Rule:
    name: str
    field: str
    required: bool
    min: Optional[float]
    max: Optional[float]
    allowed: Optional[set]
    severity: str


def _bound(b):
    if b is None:
        return "∞"
    # Rust prints a whole float without ".0"; so do the violations here.
    return str(int(b)) if float(b).is_integer() else repr(float(b))


def _rule(i, raw, rules):
    if not isinstance(raw, dict):
        raise weir.ConfigError(f"config.rules[{i}]: expected a table, got {raw!r}")
    try:
        rule = weir.Config(raw).parse(RuleConfig)
    except weir.ConfigError as e:
        raise weir.ConfigError(str(e).replace("config.", f"config.rules[{i}].", 1)) from None
    at = f"config.rules[{i}] (field {rule.field!r})"
    if not rule.required and rule.min is None and rule.max is None and rule.allowed is None:
        raise weir.ConfigError(f"{at}: the rule checks nothing; set required, min, max or allowed")
    if rule.severity not in (weir.WARN, weir.REJECT, weir.CRITICAL):
        raise weir.ConfigError(f"config.rules[{i}].severity: {rule.severity!r} is not warn, reject or critical")
    return rule, at


def _field_type(rules, name):
    explicit = implied = None
    for rule in (r for r in rules if r.field == name):
        if rule.type is not None:
            ty = TYPES.get(rule.type)
            if ty is None:
                raise weir.ConfigError(f"unknown type {rule.type!r}")
            if explicit is not None and explicit != ty:
                raise weir.ConfigError(f"rules give the field two types, {explicit} and {ty}")
            explicit = ty
        if rule.min is not None or rule.max is not None:
            implied = implied or weir.FLOAT64
        elif rule.allowed is not None:
            implied = implied or weir.TEXT
    found = explicit or implied
    if found is None:
        raise weir.ConfigError(
            'cannot tell the field\'s type; add type = "text" (or int64, float64, boolean, timestamp)'
        )
    return found


class RulesValidator(weir.Validator):
    def __init__(self, config):
        raw = config.get("rules", list)
        parsed = [_rule(i, r, raw) for i, r in enumerate(raw)]
        configs = [rule for rule, _ in parsed]
        self.inputs = []
        self.rules = []
        for rule, at in parsed:
            try:
                ty = _field_type(configs, rule.field)
            except weir.ConfigError as e:
                raise weir.ConfigError(f"{at}: {e}") from None
            if rule.field not in [c.name for c in self.inputs]:
                self.inputs.append(weir.column(rule.field, ty))
            check = "required" if rule.required else "allowed" if rule.allowed is not None else "range"
            self.rules.append(Rule(
                name=rule.name or f"{rule.field}-{check}",
                field=rule.field,
                required=rule.required,
                min=rule.min,
                max=rule.max,
                allowed=None if rule.allowed is None else set(rule.allowed),
                severity=rule.severity,
            ))

    def validate(self, batch):
        # A column at a time: each check finds its rows in one comprehension, and only the
        # (few) broken rows pay for a message. Comparisons with NaN are false, as in Rust.
        out = []
        for rule in self.rules:
            values, field = batch[rule.field], rule.field
            found = []
            if rule.required:
                found += [(row, f"{field} is missing") for row, v in enumerate(values) if v is None]
            if rule.allowed is not None:
                allowed = rule.allowed
                bad = [row for row, v in enumerate(values) if v is not None and v not in allowed]
                found += [(row, f"{field} {json.dumps(values[row], ensure_ascii=False)} is not an allowed value")
                          for row in bad]
            elif rule.min is not None or rule.max is not None:
                lo = float("-inf") if rule.min is None else rule.min
                hi = float("inf") if rule.max is None else rule.max
                bad = [row for row, v in enumerate(values) if v is not None and (v < lo or v > hi)]
                span = f"[{_bound(rule.min)}, {_bound(rule.max)}]"
                found += [(row, f"{field} {_bound(values[row])} is outside {span}") for row in bad]
            if rule.required and len(found) > 1:
                found.sort(key=lambda f: f[0])
            out += [weir.Violation(row, rule.name, message, rule.severity) for row, message in found]
        return out
