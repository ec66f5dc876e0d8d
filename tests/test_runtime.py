"""The runtime builds its long-lived parts once and releases them on close."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from connector.config import config_for_tests
from connector.runtime import STRIPE_CONCURRENCY, Runtime


def _runtime() -> Runtime:
    return Runtime(config_for_tests({"database": {"url": "sqlite://"}}))


def test_job_threads_asking_at_once_share_one_stripe_pool() -> None:
    runtime = _runtime()
    start = threading.Barrier(4)
    pools: list[ThreadPoolExecutor] = []

    def ask() -> None:
        start.wait()
        pools.append(runtime.stripe_calls)

    askers = [threading.Thread(target=ask) for _ in range(4)]
    for t in askers:
        t.start()
    for t in askers:
        t.join()

    assert len({id(p) for p in pools}) == 1
    assert pools[0]._max_workers == STRIPE_CONCURRENCY
    runtime.close()


def test_close_ends_the_stripe_threads() -> None:
    runtime = _runtime()
    pool = runtime.stripe_calls
    assert list(pool.map(lambda n: n * 2, range(20))) == [n * 2 for n in range(20)]
    threads = list(pool._threads)

    runtime.close()

    assert threads and not any(t.is_alive() for t in threads)
    assert runtime.stripe_calls is not pool  # a closed runtime used again builds a new pool
    runtime.close()
