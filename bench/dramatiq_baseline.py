"""The Dramatiq baseline of bench/async_bench.py: the same shape of work on Dramatiq with
its Redis broker, run in its own environment (bench/.venv-dramatiq, made by async_bench on
first use), never imported by Ember.

    bench/.venv-dramatiq/bin/python bench/dramatiq_baseline.py --events N --redis URL \
        --namespace NS [--producers 32] [--threads 8]

Enqueues N messages for a no-op actor from ``producers`` concurrent threads, then times one
worker (one process, ``threads`` threads) draining them, and prints one JSON line:
``{"enqueued_per_s": …, "drained_per_s": …}``. Every key it made under the namespace is
deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--producers", type=int, default=32)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    broker = RedisBroker(url=args.redis, namespace=args.namespace)
    dramatiq.set_broker(broker)
    done = threading.Event()
    count = 0
    lock = threading.Lock()

    @dramatiq.actor(max_retries=0)
    def noop(n: int) -> None:
        nonlocal count
        with lock:  # a no-op, counted so that the drain's end is known without polling
            count += 1
            if count == args.events:
                done.set()

    try:
        share, extra = divmod(args.events, args.producers)

        def produce(k: int) -> None:
            for i in range(share + (1 if k < extra else 0)):
                noop.send(i)

        producers = [threading.Thread(target=produce, args=(k,))
                     for k in range(args.producers)]
        started = time.perf_counter()
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        enqueued = args.events / (time.perf_counter() - started)

        worker = dramatiq.Worker(broker, worker_threads=args.threads)
        started = time.perf_counter()
        worker.start()
        if not done.wait(timeout=600):
            raise SystemExit(f"dramatiq drained {count} of {args.events} messages in 600 s")
        drained = args.events / (time.perf_counter() - started)
        worker.stop()
        print(json.dumps({"enqueued_per_s": enqueued, "drained_per_s": drained}))
    finally:
        broker.close()
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(f"{args.namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()
