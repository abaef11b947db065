"""Reading one sample out of a Prometheus exposition, so a test can assert how much a counter moved.

Checking that a metric line is present proves little when the registry is process-global: an earlier test
may have written it. Tests read the value before and after and assert the difference.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The sample `name` whose labels are exactly `labels`; 0.0 when it has not been written yet."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def has_samples(exposition: str, family_name: str) -> bool:
    """True when the family has at least one sample (a HELP or TYPE line alone does not count)."""
    return any(family.name == family_name and family.samples for family in text_string_to_metric_families(exposition))
