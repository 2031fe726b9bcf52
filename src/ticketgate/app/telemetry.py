"""The instruments' parts of the lifecycle: tracing, the access log, the metric buffers.

They come first in the lifecycle, so they stop last: everything else's start and shutdown is
still traced, logged and counted.
"""

from __future__ import annotations

from ticketgate.app.lifecycle import Part
from ticketgate.observability import prometheus
from ticketgate.observability.instruments import Instruments
from ticketgate.observability.settings import TracingSettings
from ticketgate.observability.tracing import Tracing, start_tracing


class WorkerTracing:
    """Tracing built and started at the app's start, in the worker: spans are shipped from
    the worker's loop (building it in `create_app` would tie it to the parent process)."""

    def __init__(self, settings: TracingSettings) -> None:
        self._settings = settings
        self._tracing: Tracing | None = None

    async def start(self) -> None:
        self._tracing = start_tracing(self._settings)
        self._tracing.start()

    async def stop(self) -> None:
        """Sends the spans still waiting."""
        tracing, self._tracing = self._tracing, None
        if tracing is not None:
            await tracing.stop()


def tracing_part(settings: TracingSettings) -> Part | None:
    """First of all parts when tracing is on, so the embedded services' servers, started
    later, see it and trace their RPCs too."""
    if not settings.enabled:
        return None
    tracing = WorkerTracing(settings)
    return Part("tracing", tracing.start, tracing.stop)


def access_log_part(instruments: Instruments) -> Part | None:
    """Flushed at stop, after everything that serves requests has stopped."""
    access = instruments.access
    if access is None:
        return None

    async def flush() -> None:
        access.flush()

    return Part("access log", stop=flush)


def metrics_part(instruments: Instruments) -> Part | None:
    """The recorders' buffers flushed on an interval; at stop the last counts are flushed
    before this worker's multi-process files are finalised."""
    flusher = instruments.metrics_flusher
    if flusher is None:
        return None

    async def stop() -> None:
        await flusher.stop()
        prometheus.mark_process_dead()

    return Part("metrics", flusher.start, stop)
