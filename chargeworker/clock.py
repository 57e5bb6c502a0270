"""The clock, passed in so tests can move time."""

from datetime import UTC, datetime


class Clock:
    """Wall-clock time as naive UTC, the form every table here stores."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)
