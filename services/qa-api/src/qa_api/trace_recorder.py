"""A lean MLflow trace recorder: the request records plain data, one thread exports it in batches.

MLflow's own tracing (live OpenTelemetry spans, the in-memory trace manager, DSPy's autolog callback)
cost qa-api two thirds of its throughput with every answer traced: every span serialised its inputs
in the request, and every trace took two or three HTTP calls. Here a request only takes timestamps and
keeps references to values it already has. The export thread builds MLflow `Span` entities and sends
the spans of many traces in one `log_spans` call (OTLP to the tracking server). A SQL-backed MLflow
builds each trace's record from its spans: request time, duration and state from the root span,
previews from its inputs and outputs, tags from its `mlflow.traceTag.*` attributes, the session from
`session.id`. So one HTTP call carries up to `max_batch` traces.

The trace id is chosen here, from a random OpenTelemetry trace id, so the answer carries it before
anything is sent. A rating sent before the trace lands is retried by feedback-ui's outbox.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from mlflow.entities import Span
from mlflow.tracing.client import TracingClient

logger = logging.getLogger(__name__)

TAG_PREFIX = "mlflow.traceTag."  # root-span attributes MLflow turns into trace tags
# The trace of the request being answered, if it is traced: the LM records its span into it.
current_trace: ContextVar[PendingTrace | None] = ContextVar("current_trace", default=None)
_ids = random.Random()  # ids, not secrets: uniqueness is all MLflow needs


def _new_id(bits: int) -> int:
    return _ids.getrandbits(bits) or 1


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # the retrieved passages
        return dataclasses.asdict(value)
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _b64(value: int, size: int) -> str:
    return base64.b64encode(value.to_bytes(size, "big")).decode()


@dataclasses.dataclass(slots=True)
class SpanRecord:
    """One span as plain data; encoded only in the export thread."""

    name: str
    span_type: str
    parent_id: int | None
    inputs: Any = None
    outputs: Any = None
    span_id: int = dataclasses.field(default_factory=lambda: _new_id(64))
    start_ns: int = dataclasses.field(default_factory=time.time_ns)
    end_ns: int | None = None
    error: str | None = None

    def end(self, outputs: Any = None, error: BaseException | None = None) -> None:
        if outputs is not None:
            self.outputs = outputs
        if error is not None:
            self.error = f"{type(error).__name__}: {error}"
        self.end_ns = time.time_ns()


class PendingTrace:
    """One request's trace while it is being answered."""

    __slots__ = ("otel_trace_id", "root", "session_id", "spans", "tags", "trace_id")

    def __init__(self, name: str, inputs: Any, tags: dict[str, str], session_id: str | None) -> None:
        self.otel_trace_id = _new_id(128)
        self.trace_id = f"tr-{self.otel_trace_id:032x}"  # the id MLflow derives from the OTel trace id
        self.root = SpanRecord(name, "CHAIN", None, inputs=inputs)
        self.spans = [self.root]
        self.tags = {"mlflow.traceName": name, **tags}
        self.session_id = session_id

    def start_span(self, name: str, span_type: str, inputs: Any = None, start_ns: int | None = None) -> SpanRecord:
        span = SpanRecord(name, span_type, self.root.span_id, inputs=inputs)
        if start_ns is not None:
            span.start_ns = start_ns
        self.spans.append(span)
        return span

    def to_mlflow_spans(self) -> list[Span]:
        """The spans as MLflow entities, in the dictionary form `Span.to_dict` writes and `from_dict` reads."""
        trace_b64, root_end = _b64(self.otel_trace_id, 16), self.root.end_ns or time.time_ns()
        return [Span.from_dict(self._span_dict(span, trace_b64, root_end)) for span in self.spans]

    def _span_dict(self, span: SpanRecord, trace_b64: str, root_end: int) -> dict[str, Any]:
        attributes = {"mlflow.traceRequestId": _json(self.trace_id), "mlflow.spanType": _json(span.span_type)}
        if span.inputs is not None:
            attributes["mlflow.spanInputs"] = _json(span.inputs)
        if span.outputs is not None:
            attributes["mlflow.spanOutputs"] = _json(span.outputs)
        if span is self.root:
            attributes.update({TAG_PREFIX + key: _json(str(value)) for key, value in self.tags.items()})
            if self.session_id:
                attributes["session.id"] = _json(self.session_id)
        return {
            "trace_id": trace_b64,
            "span_id": _b64(span.span_id, 8),
            "parent_span_id": _b64(span.parent_id, 8) if span.parent_id is not None else "",
            "name": span.name,
            "start_time_unix_nano": span.start_ns,
            "end_time_unix_nano": span.end_ns or root_end,
            "status": {
                "code": "STATUS_CODE_ERROR" if span.error else "STATUS_CODE_OK",
                "message": span.error or "",
            },
            "attributes": attributes,
            "events": [],
        }


# --8<-- [start:recorder]
class TraceRecorder:
    """A bounded queue of finished traces and one daemon thread that sends them in batches.

    `record` never blocks the event loop: when the queue is full the trace is dropped and
    `on_outcome("dropped_queue_full")` counts it; a batch MLflow refused counts as "export_failed".
    """

    def __init__(
        self,
        tracking_uri: str,
        max_queue: int = 5000,
        max_batch: int = 64,
        on_outcome: Callable[[str, int], None] = lambda outcome, n: None,
    ) -> None:
        self.tracking_uri, self.max_batch, self.on_outcome = tracking_uri, max_batch, on_outcome
        self.experiment_id: str | None = None  # set once the experiment exists; no traces before
        self._queue: queue.Queue[PendingTrace | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self.experiment_id is not None

    def record(self, trace: PendingTrace) -> bool:
        try:
            self._queue.put_nowait(trace)
        except queue.Full:
            self.on_outcome("dropped_queue_full", 1)
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trace-export", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, then stop the thread (blocking: run it off the event loop)."""
        if self._thread is None:
            return
        self._queue.put(None)  # may wait for room: shutdown is the one place that can
        self._thread.join(timeout_s)
        self._thread = None

    def _run(self) -> None:
        client = TracingClient(self.tracking_uri)
        while True:
            batch, stop = self._next_batch()
            if batch:
                self._export(client, batch)
            if stop:
                return

    def _next_batch(self) -> tuple[list[PendingTrace], bool]:
        """Wait for one trace, then take what else is queued, up to `max_batch`.

        A trace goes out at once when qa-api is quiet, so a rating sent right after the answer finds
        it, and batches grow by themselves under load: what queued while the last batch was being
        sent goes in the next.
        """
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _export(self, client: TracingClient, batch: list[PendingTrace]) -> None:
        try:
            spans = [span for trace in batch for span in trace.to_mlflow_spans()]
            client.log_spans(self.experiment_id, spans)  # type: ignore[arg-type]
        except Exception as error:  # MLflow down or refusing: count it, keep serving
            logger.warning("could not send %d traces to MLflow: %s", len(batch), error)
            self.on_outcome("export_failed", len(batch))
            return
        self.on_outcome("exported", len(batch))


# --8<-- [end:recorder]
