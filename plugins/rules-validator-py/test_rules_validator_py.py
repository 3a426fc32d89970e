import unittest

import weir_sdk as weir
from rules_validator_py import RulesValidator


def validator(rules):
    return RulesValidator(weir.Config({"rules": rules}))


class TestRules(unittest.TestCase):
    def test_rides_rules(self):
        v = validator([
            {"name": "city-present", "field": "city", "required": True},
            {"name": "fare-non-negative", "field": "fare", "min": 0.0},
            {"name": "known-city", "field": "city", "allowed": ["Denver", "Oslo"], "severity": "warn"},
        ])
        self.assertEqual(v.inputs, [weir.column("city", weir.TEXT), weir.column("fare", weir.FLOAT64)])
        found = v.validate(weir.Batch({"city": ["Denver", None, "Paris"], "fare": [1.0, 2.0, -3.5]}))
        self.assertEqual(
            sorted((f.row, f.rule, f.severity) for f in found),
            [(1, "city-present", "reject"), (2, "fare-non-negative", "reject"), (2, "known-city", "warn")],
        )

    def test_bad_rules_are_refused_with_the_key(self):
        cases = [
            ([{"field": "fare", "min": 0, "severity": "fatal"}], "rules[0].severity"),
            ([{"field": "city", "required": True}], "type"),
            ([{"field": "city", "colour": "red"}], "colour"),
        ]
        for rules, named in cases:
            with self.assertRaises(weir.ConfigError) as e:
                validator(rules)
            self.assertIn(named, str(e.exception))


if __name__ == "__main__":
    unittest.main()
