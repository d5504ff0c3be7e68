"""An application writing sessions, for the live-migration tests: run as its own process.

    python tests/live_writer.py URL SECONDS OPS_PER_S KEYS

For SECONDS, about OPS_PER_S operations a second on `sess:<n>` (n < KEYS + 10% new ones):
create or refresh a session (value and TTL), log one out (DEL), extend one (PEXPIRE), some
hash sessions (HSET + PEXPIRE), and a few short TTLs that expire during the run. Stops early
on SIGTERM; prints how many operations it made.
"""

import random
import signal
import sys
import time

import redis

url, seconds, rate, keys = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
stopped = False


def stop(*_):
    global stopped
    stopped = True


signal.signal(signal.SIGTERM, stop)
client = redis.Redis.from_url(url)
rng = random.Random(7)
ops, started = 0, time.monotonic()
while not stopped and time.monotonic() - started < seconds:
    pipe = client.pipeline(transaction=False)
    for _ in range(10):  # ten operations per round trip
        key = f"sess:{rng.randrange(int(keys * 1.1)):07d}"
        pick = rng.random()
        if pick < 0.45:
            pipe.set(key, b"user=%d;t=%f" % (rng.randrange(10**6), time.time()), px=rng.randint(60_000, 1_800_000))
        elif pick < 0.60:
            pipe.delete(key)
        elif pick < 0.80:
            pipe.pexpire(key, rng.randint(60_000, 1_800_000))
        elif pick < 0.95:
            hkey = f"sess:h{rng.randrange(keys // 20):06d}"
            pipe.hset(hkey, mapping={"user": str(rng.randrange(10**6)), "seen": str(time.time())})
            pipe.pexpire(hkey, rng.randint(60_000, 1_800_000))
        else:
            pipe.set(key, b"short", px=rng.randint(200, 3_000))  # expires during the run
        ops += 1
    pipe.execute()
    ahead = started + ops / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
print(ops, flush=True)
