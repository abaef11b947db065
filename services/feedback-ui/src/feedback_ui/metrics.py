"""Prometheus metrics of feedback-ui: submissions, the outbox, logins and HTTP requests."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# --8<-- [start:metrics]
SUBMISSIONS = Counter("feedback_submissions_total", "Feedback and preferences received.", ["kind", "outcome"])
RATINGS = Counter(
    "feedback_ratings_total", "Answers rated, by the variant that answered and the rating (up, down).",
    ["variant", "rating"],
)  # fmt: skip
OUTBOX_ITEMS = Gauge("feedback_outbox_items", "Outbox rows by status (pending, delivered, failed).", ["status"])
OUTBOX_DELIVERED = Counter(
    "feedback_outbox_delivered_total", "Assessments delivered to MLflow; found_existing: logged by an earlier "
    "attempt whose mark was lost.", ["how"],
)  # fmt: skip
OUTBOX_FAILED_ATTEMPTS = Counter(
    "feedback_outbox_failed_attempts_total", "Delivery attempts that will be retried, by reason.", ["reason"]
)
DELIVERY_LAG = Histogram(
    "feedback_outbox_delivery_lag_seconds", "From submission to assessment in MLflow.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400),
)  # fmt: skip
LOGIN_FAILURES = Counter("feedback_login_failures_total", "Failed logins, by outcome.", ["outcome"])
REQUESTS = Counter("feedback_http_requests_total", "HTTP requests, by route and status.", ["route", "status"])
LATENCY = Histogram("feedback_http_request_duration_seconds", "HTTP request duration.", ["route"])
# --8<-- [end:metrics]
