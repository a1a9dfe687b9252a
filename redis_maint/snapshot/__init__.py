"""Consistent copies of a live Redis's data files: BGSAVE, the AOF-rewrite guard, the AOF manifest."""
