"""Rejects negative fares."""

import weir_sdk as weir


class {Type}(weir.Validator):
    inputs = [weir.column("fare", weir.FLOAT64)]

    def validate(self, batch):
        for row, fare in enumerate(batch["fare"]):
            if fare is not None and fare < 0:
                yield weir.Violation(row, "fare-non-negative", f"fare {fare} is negative")
