"""The AOF archive: Redis 7's incr files shipped as they grow, for restores to a point in time.

layout: keys and documents on the target; follower: reading appended bytes up to a command boundary;
state: the archiver's position in the history store; archiver: the loop; status: what `archive status`
shows; prune: retention.
"""
