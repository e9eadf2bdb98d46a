"""The user-error type, as the orchestration layer knows it. It is defined with the cells,
the lowest layer, so that cells and backends can raise it without importing ``bench``."""
from cells.errors import BenchError, unknown_name

__all__ = ["BenchError", "unknown_name"]
