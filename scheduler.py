"""redis-maint entry point: `python scheduler.py ARGS` is `redis-maint ARGS`.

The CLI lives in redis_maint.cli and the APScheduler wiring in redis_maint.run.daemon.
"""

from redis_maint.cli import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    main()
