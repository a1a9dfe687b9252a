"""Evidence an auditor can check: the history's hash chain verified (verify.py), checkpoints of it
outside the database (checkpoints.py), and both together (check.py)."""
