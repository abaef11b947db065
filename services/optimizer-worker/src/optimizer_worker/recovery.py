"""Jobs whose worker died: put back on the queue while attempts remain, else failed with the reason."""

from __future__ import annotations

import logging

from celery import Celery

from optimizer_worker.jobs import JobStore
from optimizer_worker.queue import enqueue
from optimizer_worker.settings import Settings

log = logging.getLogger(__name__)


# --8<-- [start:recover]
def recover(app: Celery, store: JobStore, settings: Settings) -> None:
    requeued, failed = store.recover_stale(settings.lease_timeout_s, settings.max_attempts)
    for job_id in requeued:
        log.warning("job %s: its worker stopped renewing the lease; running it again", job_id)
        enqueue(app, store, job_id)
    for job_id in failed:
        log.warning("job %s: its worker died and no attempts are left; marked failed", job_id)
    # A message the broker lost (e.g. a worker killed between fetching and claiming, with a transport
    # that cannot redeliver): after the visibility timeout, send it again. Duplicates are dropped at claim.
    for job_id in store.lost_in_queue(settings.broker_visibility_timeout_s):
        log.warning("job %s: queued for too long; sending its message again", job_id)
        enqueue(app, store, job_id)


# --8<-- [end:recover]
