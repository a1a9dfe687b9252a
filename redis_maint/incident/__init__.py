"""`redis-maint diagnose`: the runbook's Incident Response as parts that each gather one thing
(reachability, the container, the host, memory, persistence, latency and load, data files) within
their own time bound, and findings ranked by severity, each naming its runbook procedure and the
next command. Read-only: nothing here writes to Redis, the container or the data dir.
"""
