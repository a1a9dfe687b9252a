"""What takes the memory: the largest keys and the bytes per key prefix, read-only and SCAN-based.

bigkeys   the scan (SCAN, then MEMORY USAGE and PTTL in bounded script calls), on every primary
report    the bounded top-N heap, the prefix table, and the report with its JSON
"""

from redis_maint.keyspace.bigkeys import scan_big_keys
from redis_maint.keyspace.report import BigKeysReport, PrefixRow, TopKey

__all__ = ["BigKeysReport", "PrefixRow", "TopKey", "scan_big_keys"]
