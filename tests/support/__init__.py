"""The scaffolding the tests share; no test lives here.

- common: ROOT, json_out, wait_for, free_port, in_ci (what every kind of test uses)
- history: the history store of the current test's settings
- daemon: the daemon as a real process or with its real scheduler in a thread
- metrics: exposition text parsed as Prometheus parses it
- services/: real programs started for a test (redis-server, a Redis Cluster, moto, a webhook)
- builders/: data as the application or a job leaves it (sessions, backups, stored backups)
- fixtures/: pytest fixtures, registered once by tests/conftest.py
- processes/: programs a test starts as another process (python -m tests.support.processes.X)
"""
