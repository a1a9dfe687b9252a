"""Integrity checks in throwaway containers: the container engine, the check tools, their verdicts, the restore drill."""
