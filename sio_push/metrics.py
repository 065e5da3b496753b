"""Prometheus metrics (served at `GET /metrics` by the HTTP API).

Each application has its own registry, so several servers can live in one process (tests). With
`--workers N` the entry point points prometheus-client's multiprocess mode at a shared folder before
the workers start, and every worker answers `/metrics` for all of them.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)


class Metrics:
    """The server's counters. Labels are bounded: results, codes and routes, never ids.

    :param multiprocess_dir: the folder the workers share (prometheus-client's multiprocess mode, which
                             the entry point turns on through PROMETHEUS_MULTIPROC_DIR); None for one
                             process.
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self._multiprocess_dir = multiprocess_dir
        registry = None if multiprocess_dir else self.registry
        self.sockets = Gauge(
            "sio_push_sockets", "Connected Socket.IO sockets.", registry=registry, multiprocess_mode="livesum"
        )
        self.phoenix_sockets = Gauge(
            "sio_push_phoenix_sockets",
            "Connected Phoenix Channels sockets.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.tasks = Gauge(
            "sio_push_asyncio_tasks",
            "asyncio tasks alive in the process (each process's count as of the last /metrics it answered).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.connects = Counter(
            "sio_push_connects",
            "Socket.IO connects by result (connected, recovered, or a refusal code).",
            ["result"],
            registry=registry,
        )
        self.pushes = Counter(
            "sio_push_pushes", "Pushes accepted by the HTTP API, by route.", ["route"], registry=registry
        )
        self.push_errors = Counter(
            "sio_push_push_errors", "Pushes refused, by HTTP status.", ["status"], registry=registry
        )
        self.deliveries = Counter("sio_push_deliveries", "Events written to this process's sockets.", registry=registry)
        self.webhooks = Counter(
            "sio_push_webhook_requests",
            "Webhook requests by result: sent (2xx), failed (one try that will be retried), dropped (gave up).",
            ["result"],
            registry=registry,
        )
        self.webhook_events_dropped = Counter(
            "sio_push_webhook_events_dropped",
            "Webhook events never sent, by reason: queue_full, gave_up (retries ran out), backend (Redis down).",
            ["reason"],
            registry=registry,
        )
        self.push_seconds = Histogram(
            "sio_push_push_seconds",
            "Time to accept a push (validation and broker hand-over).",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )

    def exposition(self) -> bytes:
        if self._multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self._multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)
