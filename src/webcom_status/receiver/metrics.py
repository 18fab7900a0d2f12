"""Prometheus metrics of one receiver, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class ReceiverMetrics:
    """Counters of what the webhook was pushed and what it did with it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.pushes = Counter(
            "webcom_status_pushes",
            "Pushed documents by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.states = Counter(
            "webcom_status_states",
            "Pushed states by outcome: stored or rejected",
            ["outcome"],
            registry=self.registry,
        )
        self.unknown_status = Counter(
            "webcom_status_unknown_status_states",
            "Stored states whose overall status is not one of the six documented values",
            registry=self.registry,
        )
        self.stored = self.states.labels("stored")
        self.rejected = self.states.labels("rejected")
        self.pushes_stored = self.pushes.labels("stored")
        self.pushes_refused = self.pushes.labels("refused")
        self.pushes_failed = self.pushes.labels("storage_error")
