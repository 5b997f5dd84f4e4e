"""Demo data: projects pointed at the simulator, a partner, demo users.

Idempotent: every row is looked up by its natural key and brought to the
same state, and the demo partner's key is derived from SECRET_KEY, so a
second run prints the same key and adds no rows.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from moderation.models import Delivery, Partner, Project, ReviewMode
from moderation.services.keys import KEY_PREFIX, install_key

DEMO_PARTNER = "demo-partner"

_VISUAL_THRESHOLDS = {
    "general_nsfw": {"review": 0.5, "reject": 0.9},
    "general_suggestive": {"review": 0.7, "reject": 0.97},
    "yes_violence": {"review": 0.5, "reject": 0.9},
}
_TEXT_THRESHOLDS = {
    "sexual": {"review": 0.6, "reject": 1.0},
    "hate": {"review": 0.6, "reject": 1.0},
    "violence": {"review": 0.6, "reject": 1.0},
    "bullying": {"review": 0.6, "reject": 1.0},
}
_REASONS = ["Nudity", "Violence", "Hate", "Spam", "Other policy violation"]

# slug, name, endpoint type, review mode, delivery, thresholds
DEMO_PROJECTS = [
    ("demo-visual-sync", "Demo visual (sync)", "visual", ReviewMode.MODEL_ONLY, Delivery.SYNC, _VISUAL_THRESHOLDS),
    ("demo-visual-async", "Demo visual (async)", "visual", ReviewMode.MODEL_ONLY, Delivery.ASYNC, _VISUAL_THRESHOLDS),
    ("demo-visual-review", "Demo visual (Hive manual review)", "visual", ReviewMode.MODEL_MANUAL_REVIEW,
     Delivery.ASYNC, _VISUAL_THRESHOLDS),
    ("demo-text", "Demo text", "text", ReviewMode.MODEL_ONLY, Delivery.SYNC, _TEXT_THRESHOLDS),
    ("demo-speech", "Demo speech", "speech", ReviewMode.MODEL_ONLY, Delivery.ASYNC, _TEXT_THRESHOLDS),
]

DEMO_USERS = [
    # username, password, superuser, groups
    ("admin", "admin", True, ["lead"]),
    ("moderator", "moderator", False, ["moderator"]),
]


@dataclass(frozen=True)
class DemoSeed:
    projects: list[Project]
    partner: Partner
    api_key: str


def demo_api_key() -> str:
    """The demo partner's key, derived from SECRET_KEY so reruns agree."""
    material = hmac.new(settings.SECRET_KEY.encode(), b"hiveportal-demo-partner-key", hashlib.sha256).hexdigest()
    return f"{KEY_PREFIX}_{material[:12]}_{material[12:]}"


def simulator_key(endpoint_type: str, review_mode: str) -> str:
    review = "-review" if review_mode == ReviewMode.MODEL_MANUAL_REVIEW else ""
    return f"sim-{endpoint_type}{review}-demo"


@transaction.atomic
def seed_demo() -> DemoSeed:
    projects = []
    for slug, name, endpoint_type, review_mode, delivery, thresholds in DEMO_PROJECTS:
        project, _ = Project.objects.update_or_create(
            slug=slug,
            defaults=dict(
                name=name,
                endpoint_type=endpoint_type,
                review_mode=review_mode,
                delivery=delivery,
                hive_api_key=simulator_key(endpoint_type, review_mode),
                thresholds=thresholds,
                reject_reasons=_REASONS,
                is_active=True,
            ),
        )
        project.full_clean()
        projects.append(project)

    partner, _ = Partner.objects.get_or_create(name=DEMO_PARTNER)
    partner.projects.add(*projects)
    plaintext = demo_api_key()
    install_key(partner, plaintext, name="demo")

    User = get_user_model()
    for username, password, superuser, groups in DEMO_USERS:
        user, created = User.objects.get_or_create(username=username)
        if created or not user.check_password(password):
            user.set_password(password)
        user.is_staff = superuser
        user.is_superuser = superuser
        user.save()
        for group_name in groups:
            group, _ = Group.objects.get_or_create(name=group_name)
            user.groups.add(group)
    return DemoSeed(projects=projects, partner=partner, api_key=plaintext)
