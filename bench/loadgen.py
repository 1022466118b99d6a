"""A bounded, loopback-only HTTP load generator (closed loop, fixed concurrency).

Each of ``concurrency`` threads (spread over a few processes so the client's
own GIL does not cap the load) sends the same request back to back for
``duration`` seconds and records every latency.  Targets are refused unless
they are on the loopback interface.
"""

from __future__ import annotations

import http.client
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LoadResult:
    """Latencies (seconds) of successful requests plus counts."""

    latencies: list[float]
    errors: int
    statuses: dict[int, int]
    elapsed: float

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
        return ordered[index]


def _worker(
    url: str, body: bytes, headers: dict[str, str], threads: int, duration: float, start_at: float, queue
) -> None:
    parts = urlsplit(url)
    host, port, path = parts.hostname, parts.port or 80, parts.path
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    lock = threading.Lock()

    def loop() -> None:
        nonlocal errors
        local: list[float] = []
        local_status: dict[int, int] = {}
        local_errors = 0
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + duration
        while True:
            now = time.perf_counter()
            if time.time() >= deadline:
                break
            try:
                conn.request("POST" if body else "GET", path, body=body or None, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close" or response.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=30)
            except (OSError, http.client.HTTPException):
                local_errors += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
                continue
            local_status[status] = local_status.get(status, 0) + 1
            if status == 200:
                local.append(time.perf_counter() - now)
            else:
                local_errors += 1
        conn.close()
        with lock:
            latencies.extend(local)
            errors += local_errors
            for key, value in local_status.items():
                statuses[key] = statuses.get(key, 0) + value

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put((latencies, errors, statuses))


def run_load(
    url: str, *, body: bytes, headers: dict[str, str], concurrency: int, duration: float, processes: int | None = None
) -> LoadResult:
    """Drive ``url`` at ``concurrency`` for ``duration`` seconds; return latencies."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"refusing to load {host}: only loopback targets are allowed")
    processes = processes or min(concurrency, 2)
    per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    queue: mp.Queue = mp.Queue()
    start_at = time.time() + 0.3
    procs = [mp.Process(target=_worker, args=(url, body, headers, n, duration, start_at, queue)) for n in per if n]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=duration + 60) for _ in procs]
    for proc in procs:
        proc.join(timeout=10)
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    for lat, err, stat in results:
        latencies.extend(lat)
        errors += err
        for key, value in stat.items():
            statuses[key] = statuses.get(key, 0) + value
    return LoadResult(latencies=latencies, errors=errors, statuses=statuses, elapsed=duration)
