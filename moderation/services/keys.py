"""Partner API keys: created once, stored as prefix + digest, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from moderation.models import ApiKey, Partner

KEY_PREFIX = "hp"
# Writing last_used_at on every request would make each API call a write;
# once a minute is precise enough for an operator.
LAST_USED_GRANULARITY_SECONDS = 60


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once, never stored


class PrefixTaken(Exception):
    """A key with the chosen prefix exists already."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_prefix() -> str:
    return secrets.token_hex(6)


def issue_key(partner: Partner, name: str = "", prefix: str | None = None) -> IssuedKey:
    """A new key. A caller may choose its public `prefix` in advance (the
    admin's issue form does): the prefix is unique, so issuing under one that
    is taken raises PrefixTaken instead of creating a second key."""
    prefix = prefix or new_prefix()
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    try:
        with transaction.atomic():
            key = ApiKey.objects.create(partner=partner, prefix=prefix, name=name, digest=_digest(plaintext))
    except IntegrityError:
        if ApiKey.objects.filter(prefix=prefix).exists():
            raise PrefixTaken(prefix) from None
        raise
    return IssuedKey(api_key=key, plaintext=plaintext)


def install_key(partner: Partner, plaintext: str, name: str = "") -> ApiKey:
    """Store (or restore, unrevoked) the key `plaintext` for `partner`."""
    prefix = plaintext.split("_")[1]
    key, _ = ApiKey.objects.update_or_create(
        prefix=prefix, defaults=dict(partner=partner, name=name, digest=_digest(plaintext), revoked_at=None)
    )
    return key


def authenticate_key(plaintext: str) -> ApiKey | None:
    """The active key matching `plaintext`, or None. The row is found by its
    public prefix; the secret part is compared as a digest in constant time."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key = (
        ApiKey.objects.select_related("partner")
        .filter(prefix=parts[1], revoked_at__isnull=True, partner__is_active=True)
        .first()
    )
    if key is None or not hmac.compare_digest(key.digest, _digest(plaintext)):
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > LAST_USED_GRANULARITY_SECONDS:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def revoke_key(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
