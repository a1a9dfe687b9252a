"""Seed sample sessions like the application writes them: session:<cognito_sub> -> JSON, 24 h TTL."""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid

import redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--stale-fraction", type=float, default=0.3)
    parser.add_argument("--orgs", type=int, default=5)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.url)
    orgs = [str(uuid.UUID(int=random.getrandbits(128))) for _ in range(args.orgs)]
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for i in range(args.count):
        stale = random.random() < args.stale_fraction
        age_ms = random.randint(25, 47) * 3_600_000 if stale else random.randint(0, 23) * 3_600_000
        session = {
            "sub": str(uuid.uuid4()),
            "organisationId": random.choice(orgs),
            "email": f"user{i}@example.com",
            "createdAt": now_ms - age_ms,
            "roles": ["member"],
        }
        key = f"session:{session['sub']}"
        # A stale session that lost its TTL is what the sweep exists for; fresh ones keep 24 h.
        if stale:
            pipe.set(key, json.dumps(session))
        else:
            pipe.set(key, json.dumps(session), ex=86_400)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    print(f"seeded {args.count} sessions across {args.orgs} organisations")  # noqa: T201


if __name__ == "__main__":
    main()
