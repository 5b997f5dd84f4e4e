from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from moderation.models import Partner, Project
from moderation.services.keys import issue_key


class Command(BaseCommand):
    help = "Create a partner if needed, grant it projects, and print a new API key (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("partner", help="Partner name (created if it does not exist).")
        parser.add_argument("--projects", default="", help="Comma-separated project slugs to grant.")
        parser.add_argument("--name", default="", help="A label for the key, e.g. 'production'.")

    @transaction.atomic
    def handle(self, *args, partner: str, projects: str, name: str, **options):
        slugs = [slug.strip() for slug in projects.split(",") if slug.strip()]
        found = {p.slug: p for p in Project.objects.filter(slug__in=slugs)}
        missing = sorted(set(slugs) - set(found))
        if missing:
            raise CommandError(f"Unknown project slug(s): {', '.join(missing)}")
        partner_obj, created = Partner.objects.get_or_create(name=partner.strip())
        partner_obj.projects.add(*found.values())
        issued = issue_key(partner_obj, name=name)
        verb = "created" if created else "existing"
        granted = ", ".join(sorted(found)) or "no new projects"
        self.stdout.write(f"{verb} partner {partner_obj.name}; granted {granted}")
        self.stdout.write("Store this key now: it is shown only once.")
        self.stdout.write(f"API key: {issued.plaintext}")
