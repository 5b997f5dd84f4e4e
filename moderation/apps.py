from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "moderation"
    verbose_name = "Moderation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects partner webhooks to the pipeline's notification signal.
        from moderation.services import webhooks  # noqa: F401
