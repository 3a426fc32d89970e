"""Misbehaves on chosen fares: 13 raises, 66 loops forever, 77 asks for 1 GiB (past the
test's 256 MiB cap), 99 recurses without end; 1 prints (to weir's log, not a failure).
Other fares pass, negative ones are a violation."""

import weir_sdk as weir


def deeper(n):
    return deeper(n + 1) + 1


class Hostile(weir.Validator):
    inputs = [weir.column("fare", weir.FLOAT64)]

    def validate(self, batch):
        out = []
        for row, fare in enumerate(batch["fare"]):
            if fare == 13:
                raise ValueError(f"unlucky fare {fare}")
            if fare == 66:
                while True:
                    pass
            if fare == 77:
                out.append(bytearray(1 << 30))
            if fare == 99:
                deeper(0)
            if fare == 1:
                print(f"row {row} has a fare of 1")
            if fare is not None and fare < 0:
                out.append(weir.Violation(row, "fare-non-negative", f"fare {fare} is negative"))
        return out
