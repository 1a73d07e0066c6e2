"""The line's Prometheus metrics, fed by its events (a hook) and served for the plant's monitoring.

``inspect run --metrics-port 9108`` serves them on ``http://127.0.0.1:9108/metrics`` (``--metrics-host`` to
listen elsewhere). Counters count committed results only, so after a run they equal the database's counts.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from inspection.chain.hooks import LineEvent

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class LineMetrics:
    """Counters, histograms and gauges of a line run; call it with each :class:`LineEvent`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, open files, as exporters have
        PlatformCollector(registry=r)  # python_info
        self.frames = Counter("inspect_frames", "Results committed", registry=r)
        self.verdicts = Counter("inspect_verdicts", "Committed results by verdict", ["verdict"], registry=r)
        self.errors = Counter("inspect_errors", "Parts that could not be judged (verdict error)", registry=r)
        self.skipped = Counter("inspect_skipped_inputs", "Inputs the camera skipped (unreadable files)", registry=r)
        self.reconnects = Counter("inspect_camera_reconnects", "Camera reconnects after a drop-out", registry=r)
        self.latency = Histogram("inspect_latency_seconds", "Acquisition to commit", buckets=_LATENCY_BUCKETS_S,
                                 registry=r)
        self.stage_latency = Histogram("inspect_stage_latency_seconds", "Time in each stage of the chain",
                                       ["stage"], buckets=_LATENCY_BUCKETS_S, registry=r)
        self.batch_size = Histogram("inspect_inference_batch_size", "Sizes of the batches a part's candidates "
                                    "rode in through the inference core", buckets=_BATCH_BUCKETS, registry=r)
        self.frames_waiting = Gauge("inspect_frames_waiting", "Frames acquired and not yet inspected", registry=r)

    def __call__(self, event: LineEvent) -> None:
        if event.kind == "skipped":
            self.skipped.inc()
        elif event.kind == "reconnect":
            self.reconnects.inc()
        elif event.result is not None:
            result = event.result
            self.frames.inc()
            self.verdicts.labels(verdict=str(result.verdict)).inc()
            if result.verdict == "error":
                self.errors.inc()
            self.latency.observe(event.latency_ms / 1000)
            for stage, milliseconds in result.stage_latency_ms.items():
                self.stage_latency.labels(stage=stage).observe(milliseconds / 1000)
            for size in result.extras.get("batch_sizes", ()):
                self.batch_size.observe(size)
            self.frames_waiting.set(event.frames_waiting)

    def serve(self, port: int, *, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` from a background thread (for the life of the process)."""
        start_http_server(port, addr=host, registry=self.registry)
