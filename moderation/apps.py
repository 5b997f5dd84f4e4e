from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "moderation"
    verbose_name = "Moderation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects partner webhooks to the pipeline's notification signal.
        from moderation.services import webhooks  # noqa: F401
        # Lowers each django-q2 worker's CPU priority as it starts.
        from moderation.ops import worker  # noqa: F401
        # Here, not in the admin module: django_q's admin (listed after us) registers later.
        from moderation.admin.queues import hide_stored_successes
        hide_stored_successes()
        # Before any metric is written: lets /metrics fold the files of exited processes.
        from moderation.ops import metrics_files
        metrics_files.hold_alive_lock()
