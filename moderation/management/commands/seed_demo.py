from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from moderation.services.demo import seed_demo


class Command(BaseCommand):
    help = "Create demo projects (pointed at the simulator), a demo partner and demo users. Idempotent."

    def handle(self, *args, **options):
        if not settings.DEMO_MODE:
            raise CommandError(
                "seed_demo creates demo users with known passwords and is refused under "
                "production settings. Set HIVE_SIMULATOR=1 for a local demo."
            )
        seed = seed_demo()
        for project in seed.projects:
            self.stdout.write(
                f"project {project.slug}: {project.endpoint_type}, {project.review_mode}, {project.delivery}"
            )
        self.stdout.write(f"partner {seed.partner.name}; users admin/admin (lead), moderator/moderator")
        self.stdout.write(f"Hive API: {settings.HIVE_API_URL}")
        self.stdout.write(f"API key: {seed.api_key}")
