"""Notifications: a durable outbox in the store, sinks (Alertmanager, signed webhook, log) and
the dispatcher that delivers the one to the others with retries and a circuit breaker."""

from relia.notify.dispatcher import BreakerState, CircuitBreaker, Dispatcher, backoff_delay
from relia.notify.outbox import OutboxItem, OutboxStatus, dedup_key, notifications_for
from relia.notify.sinks import (
    AlertmanagerSink,
    DeliveryError,
    LogSink,
    Sink,
    WebhookSink,
    build_sinks,
    verify_signature,
)

__all__ = [
    "AlertmanagerSink",
    "BreakerState",
    "CircuitBreaker",
    "DeliveryError",
    "Dispatcher",
    "LogSink",
    "OutboxItem",
    "OutboxStatus",
    "Sink",
    "WebhookSink",
    "backoff_delay",
    "build_sinks",
    "dedup_key",
    "notifications_for",
    "verify_signature",
]
