"""Plain-Python pipeline stages (decode, detect, track, init, select, rows), records and the
Parquet schema. Nothing here imports apache_beam."""
