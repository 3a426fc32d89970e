"""Counts events and sums fares."""

import weir_sdk as weir


class {Type}(weir.Aggregator):
    inputs = [weir.column("fare", weir.FLOAT64)]
    outputs = [weir.column("count", weir.INT64, nullable=False), weir.column("total_fare", weir.FLOAT64, nullable=False)]
    state_version = 1

    def create(self):
        return [0, 0.0]

    def fold(self, states, batch, groups):
        for fare, group in zip(batch["fare"], groups):
            states[group][0] += 1
            states[group][1] += fare or 0.0
        return states

    def merge(self, a, b):
        return [a[0] + b[0], a[1] + b[1]]

    def emit(self, states):
        return {"count": [s[0] for s in states], "total_fare": [s[1] for s in states]}
