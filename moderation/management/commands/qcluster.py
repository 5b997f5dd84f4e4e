"""django-q2's `qcluster`, which also tells its workers that a stop has begun
(moderation/ops/shutdown.py): the cluster then exits after the Hive calls in
flight, not after each pump's budget. Once started, it sweeps at once, so the
work a stop left queued resumes now, not at the sweep's next minute."""

from __future__ import annotations

import logging
import os

from django.conf import settings
from django.db import connections
from django_q.cluster import Cluster
from django_q.conf import Conf
from django_q.management.commands import qcluster
from django_q.tasks import async_task

from moderation.ops import shutdown

logger = logging.getLogger("moderation.pipeline")


class StoppingCluster(Cluster):
    def sig_handler(self, signum, frame):
        shutdown.request_stop()
        super().sig_handler(signum, frame)


class Command(qcluster.Command):
    def handle(self, *args, **options):
        # As django-q2's command does, with our cluster class.
        settings.SECRET_KEY  # noqa: B018 - refuses to start without one
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        shutdown.prepare()
        cluster = StoppingCluster()
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
        elif Conf.CLUSTER_NAME == Conf.PREFIX:  # the main cluster, not the webhooks one
            try:
                async_task("moderation.tasks.sweep")
            except Exception:  # noqa: BLE001 - broker down: the scheduled sweep will do
                logger.exception("could not queue a sweep at start")
            finally:
                connections.close_all()  # this process only waits from now on
