"""Keeps events whose fare is at least 10."""

import weir_sdk as weir


class {Type}(weir.Transform):
    inputs = outputs = [weir.column("city", weir.TEXT), weir.column("fare", weir.FLOAT64)]

    def apply(self, batch):
        keep = [row for row, fare in enumerate(batch["fare"]) if fare is not None and fare >= 10]
        columns = {name: [batch[name][row] for row in keep] for name in ("city", "fare")}
        return weir.Output(columns, sources=keep)
