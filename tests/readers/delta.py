"""Reads a Delta table weir wrote, with Python's `deltalake` (delta-rs's binding, from
PyPI) and its SQL engine, never with weir: the latest revision of each window (the query
docs/PIPELINES.md gives), the `txn` version of an app id, the operations in the log, and
how many files the table has now. Prints one JSON object.

    python3 tests/readers/delta.py TABLE KEY_COLUMNS APP_ID [STORAGE_OPTIONS_JSON]

TABLE is a directory or an s3:// URL, whose store's options (endpoint, keys) come as JSON.
"""

import json
import sys

from deltalake import DeltaTable, QueryBuilder

path, keys, app = sys.argv[1], sys.argv[2], sys.argv[3]
options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
table = DeltaTable(path, storage_options=options)
latest = f"""
SELECT * FROM (
  SELECT *, row_number() OVER (PARTITION BY window_start, window_end, {keys} ORDER BY weir_seq DESC) AS latest
  FROM rows
) WHERE latest = 1
"""
result = QueryBuilder().register("rows", table).execute(latest).read_all()
columns = {name: result.column(name).to_pylist() for name in result.column_names}
rows = []
for i in range(result.num_rows):
    row = {}
    for name, values in columns.items():
        value = values[i]
        if hasattr(value, "timestamp"):
            value = round(value.timestamp() * 1000)
        row[name] = value
    rows.append(row)
print(
    json.dumps(
        {
            "rows": rows,
            "txn": table.transaction_version(app),
            "operations": [entry.get("operation") for entry in table.history()],
            "files": len(table.file_uris()),
            "version": table.version(),
        }
    )
)
