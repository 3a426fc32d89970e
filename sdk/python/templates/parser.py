"""Parses `city,fare,epoch_millis` lines."""

import weir_sdk as weir


class {Type}(weir.Parser):
    outputs = [
        weir.column("city", weir.TEXT, nullable=False),
        weir.column("fare", weir.FLOAT64, nullable=False),
        weir.column("time", weir.TIMESTAMP_MS, nullable=False),
    ]
    event_time = "time"

    def parse(self, records):
        cities, fares, times, sources, errors = [], [], [], [], []
        for i, payload in enumerate(records.payloads):
            fields = payload.decode("utf-8", "replace").strip().split(",")
            if len(fields) != 3:
                errors.append(weir.RecordError(i, f"expected 3 fields, got {len(fields)}"))
                continue
            try:
                fare, time = float(fields[1]), int(fields[2])
            except ValueError:
                errors.append(weir.RecordError(i, f"bad number in {payload!r}"))
                continue
            cities.append(fields[0])
            fares.append(fare)
            times.append(time)
            sources.append(i)
        return weir.Output({"city": cities, "fare": fares, "time": times}, sources=sources, errors=errors)
