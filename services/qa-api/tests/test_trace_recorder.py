"""The trace recorder: batched export to a real MLflow server, and no trace lost without being counted."""

from __future__ import annotations

import uuid
from collections import Counter

import mlflow
import pytest

from qa_api.trace_recorder import PendingTrace, TraceRecorder
from tests.support.processes import free_port


def pending(i: int) -> PendingTrace:
    trace = PendingTrace("qa-api answer", {"question": f"question {i}"}, {"qa.request_id": f"r-{i}"}, f"s-{i}")
    trace.start_span("retrieve", "RETRIEVER", {"query": f"question {i}"}).end([{"id": "p1", "text": "a passage"}])
    trace.root.outputs = {"answer": f"answer {i}"}
    trace.root.end()
    return trace


class Outcomes:
    """Every `on_outcome` call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, outcome: str, n: int) -> None:
        self.calls.append((outcome, n))

    def totals(self) -> Counter:
        totals: Counter = Counter()
        for outcome, n in self.calls:
            totals[outcome] += n
        return totals


def test_a_full_queue_drops_the_trace_and_counts_it() -> None:
    outcomes = Outcomes()
    recorder = TraceRecorder("http://127.0.0.1:1", max_queue=2, on_outcome=outcomes)  # not started: nothing drains
    assert [recorder.record(pending(i)) for i in range(5)] == [True, True, False, False, False]
    assert outcomes.calls == [("dropped_queue_full", 1)] * 3


def test_traces_mlflow_cannot_take_are_counted_as_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    outcomes = Outcomes()
    recorder = TraceRecorder(f"http://127.0.0.1:{free_port()}", on_outcome=outcomes)  # nothing listens there
    recorder.experiment_id = "0"
    for i in range(3):
        recorder.record(pending(i))
    recorder.start()
    recorder.close()
    assert outcomes.totals() == {"export_failed": 3}


@pytest.mark.slow
def test_queued_traces_go_out_in_batches_and_read_back_whole(mlflow_server) -> None:
    mlflow.set_tracking_uri(mlflow_server.url)
    experiment_id = mlflow.create_experiment(f"recorder-{uuid.uuid4().hex[:8]}")
    outcomes = Outcomes()
    recorder = TraceRecorder(mlflow_server.url, max_batch=64, on_outcome=outcomes)
    recorder.experiment_id = experiment_id
    traces = [pending(i) for i in range(150)]
    for trace in traces:
        assert recorder.record(trace)
    recorder.start()
    recorder.close(timeout_s=60)  # sends what was queued before it stops

    assert outcomes.calls == [("exported", 64), ("exported", 64), ("exported", 22)]  # three HTTP calls, not 150
    for i in (0, 77, 149):
        read = mlflow.get_trace(traces[i].trace_id)
        assert read.info.state == "OK"
        assert read.info.tags["qa.request_id"] == f"r-{i}"
        assert read.info.trace_metadata["mlflow.trace.session"] == f"s-{i}"
        root, retrieve = sorted(read.data.spans, key=lambda span: span.parent_id is not None)
        assert (root.inputs, root.outputs) == ({"question": f"question {i}"}, {"answer": f"answer {i}"})
        assert retrieve.parent_id == root.span_id
        assert (retrieve.span_type, retrieve.outputs) == ("RETRIEVER", [{"id": "p1", "text": "a passage"}])
