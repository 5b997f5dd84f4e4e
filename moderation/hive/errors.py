"""The one exception the rest of the portal sees from Hive.

Provider pattern (STYLE.md): whatever went wrong — the network, an HTTP
status, a task Hive could not run, a body we cannot read — the pipeline gets a
`HiveError` and decides retry vs give-up from `permanent` alone.
"""

from __future__ import annotations

# Hive's task-level error codes (HIVE_API.md "Errors").
GENERIC_ERROR_CODE = "1000"


def is_download_error_code(code: str) -> bool:
    """2000 and 21xx/22xx: Hive could not fetch the URL it was given.

    Worth a few retries, then sending the bytes as `media` instead."""
    code = str(code).strip()
    return code == "2000" or (len(code) == 4 and code[:2] in ("21", "22") and code.isdigit())


def is_permanent_error_code(code: str) -> bool:
    """3xxx: the classifier refused the content itself; retrying cannot help."""
    code = str(code).strip()
    return len(code) == 4 and code.startswith("3") and code.isdigit()


class HiveError(Exception):
    """One failed call or one unusable result. `permanent` decides retry vs give-up."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
        error_codes: tuple[str, ...] = (),
        download_error: bool = False,
        body: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after = retry_after
        self.error_codes = tuple(str(code) for code in error_codes)
        self.download_error = download_error
        # An excerpt of what Hive answered, for the operator; never the request.
        self.body = body

    @property
    def transient(self) -> bool:
        return not self.permanent

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        kind = "permanent" if self.permanent else "transient"
        return f"HiveError({self.message!r}, {kind}, status_code={self.status_code}, error_codes={self.error_codes})"
