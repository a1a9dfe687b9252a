"""Session sweeps: SCAN, read in bounded batches, decide on the client, change atomically on the server.

engine    one node's sweep loop        rules     what happens to each session (pure)
wire      commands in flight           scripts   the Lua check-and-act and no-TTL probe
topology  single node or Cluster       report    the figures of a sweep
"""

from redis_maint.sessions.engine import Batching
from redis_maint.sessions.report import REASONS, SweepReport
from redis_maint.sessions.rules import Layout, Mode, Plan
from redis_maint.sessions.sweeper import count, pressure_ratio, sweep

__all__ = ["REASONS", "Batching", "Layout", "Mode", "Plan", "SweepReport", "count", "pressure_ratio", "sweep"]
