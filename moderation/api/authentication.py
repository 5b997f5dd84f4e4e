"""Partner key authentication: `Authorization: Token <key>`."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from moderation.services.keys import authenticate_key


class PartnerKeyAuthentication(authentication.TokenAuthentication):
    """request.user is the Partner, request.auth the ApiKey row."""

    keyword = "Token"

    def authenticate_credentials(self, key: str):
        api_key = authenticate_key(key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return (api_key.partner, api_key)
