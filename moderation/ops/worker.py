"""Worker processes give way to the web processes for the CPU.

The web side answers Hive's callbacks and partners' uploads while someone
waits; the queue exists to absorb work that can wait a moment. Where both run
on one machine (the embedded mode, a small install), a worker at a higher
niceness takes the CPU only when the web processes leave it free, so a burst of
processing does not add to Hive's ack latency. On a machine of its own it
changes nothing.
"""

from __future__ import annotations

import logging
import os

from django.conf import settings
from django.dispatch import receiver
from django_q.signals import post_spawn

logger = logging.getLogger("moderation.pipeline")


@receiver(post_spawn, dispatch_uid="hiveportal-worker-niceness")
def give_way_to_the_web(sender, proc_name: str, **kwargs) -> None:
    """Sent by django-q2 in each worker process it starts (and restarts)."""
    niceness = settings.Q_WORKER_NICENESS
    if niceness > 0:
        try:
            os.nice(niceness)
        except OSError:  # a platform without it; the worker runs as it is
            logger.warning("could not lower the worker's priority", extra={"worker": proc_name})
