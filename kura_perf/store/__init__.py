"""The metrics store: Parquet record files (the truth) plus DuckDB views over them."""

from kura_perf.store.db import connect, query, refresh_database
from kura_perf.store.writer import new_record_id, write_record, write_records

__all__ = ["connect", "query", "refresh_database", "new_record_id", "write_record", "write_records"]
