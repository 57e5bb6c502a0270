"""Exceptions that decide what happens to a message or a charge line.

A handler raises `PermanentError` for a message that can never succeed (it goes
to the dead-letter queue) and `TransientError` for one that may succeed later
(it stays in SQS). Rev.io errors describe what happened to one request, so the
create phase can decide the fate of each charge line.
"""


class ChargeworkerError(Exception):
    """Base of chargeworker's own errors."""


class ConfigurationError(ChargeworkerError):
    """Settings are missing or invalid; raised at start-up."""


class PermanentError(ChargeworkerError):
    """A message that can never succeed: bad attribute, unknown instance, queue or file."""

    def __init__(self, reason: str, *, kind: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class TransientError(ChargeworkerError):
    """A failure that may go away: a database, AWS or Rev.io outage."""


class RevioError(ChargeworkerError):
    """Base of the errors of one Rev.io request."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body[:1000]


class RevioRejected(RevioError):
    """Rev.io returned 400, 404, 409 or 422: the request is invalid and will stay invalid."""


class RevioThrottled(RevioError):
    """Rev.io refused the request for its rate limit (429, or a quota 403); nothing was stored."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after_s = retry_after_s


class RevioUnauthorized(RevioError):
    """Rev.io returned 401, or a 403 not about quota, so the credentials may be fixed later."""


class RevioUnavailable(RevioError):
    """Rev.io could not be reached or failed (5xx, timeout) and nothing was created."""


class RevioInDoubt(RevioError):
    """A POST /Charges whose outcome is unknown: the charge may exist in Rev.io."""
