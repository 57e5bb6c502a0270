"""Compute the billing-period dates sent with a charge, and format dates and times.

Period dates are calendar dates: the date part as stored, never shifted between
time zones. Only `DateCharged` in the charge list is shown in the tenant's time zone.
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from chargeworker.charges.windows_zones import WINDOWS_TO_IANA

logger = structlog.get_logger(__name__)

UTC_ZONE = ZoneInfo("UTC")
ONE_DAY = timedelta(days=1)
# Keyed by the case-folded Windows name, as _normalize_name() gives it.
_IANA_NAME_BY_WINDOWS_KEY = {
    windows_name.casefold(): iana_name for windows_name, iana_name in WINDOWS_TO_IANA.items()
}


@dataclass(frozen=True)
class IntegrationNames:
    """Names of the carrier integrations with their own date rules, as in the `Integration` table.

    Names match case-insensitively, ignoring surrounding spaces.
    """

    pond: str = "Pond"
    telegence: str = "Telegence"


def billing_dates(
    period_start: date,
    period_end: date,
    integration_name: str | None,
    *,
    bill_in_advance: bool,
    names: IntegrationNames,
) -> tuple[date, date]:
    """Return the (start_date, end_date) of a charge for a billing period and a carrier.

    Pond sends the period as it is, Telegence ends one day earlier, and any other
    integration starts one day later. A missing or blank integration name gets the
    rule for any other integration and logs `billing_dates.unknown_integration`.
    Callers bind the row's ids to structlog's context so that the warning names the
    row. Rows billed in advance move both dates one month later, clamped to the end
    of that month (Jan 31 becomes Feb 28 or 29).
    A `datetime` counts as its date part, without any time-zone conversion.
    """
    start = _date_part(period_start)
    end = _date_part(period_end)
    integration = _normalize_name(integration_name)

    if not integration:
        logger.warning(
            "billing_dates.unknown_integration",
            period_start=start.isoformat(),
            period_end=end.isoformat(),
        )
        dates = (start + ONE_DAY, end)
    elif integration == _normalize_name(names.pond):
        dates = (start, end)
    elif integration == _normalize_name(names.telegence):
        dates = (start, end - ONE_DAY)
    else:
        dates = (start + ONE_DAY, end)
    if dates[1] < dates[0]:
        # A period too short for the carrier's shift (one day) is sent as stored,
        # because Rev.io needs the end on or after the start.
        dates = (start, end)

    if bill_in_advance:
        dates = (_one_month_later(dates[0]), _one_month_later(dates[1]))
    return dates


def format_rev_date(value: date) -> str:
    """Format a date as Rev.io expects it, `yyyy-M-d` without zero padding (`2026-1-5`)."""
    return f"{value.year}-{value.month}-{value.day}"


def resolve_time_zone(name: str | None) -> ZoneInfo:
    """Return the zone of a `BillingTimeZone` setting, or UTC when it is empty or unknown.

    An unknown name logs a `time_zone.unknown` warning naming it.
    """
    if name is None or not name.strip():
        return UTC_ZONE

    key = name.strip()
    key = _iana_name_of_windows_zone(key) or key
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ZoneInfo raises ValueError for keys that are paths and OSError for
        # directories such as "America" or names too long for a file name.
        logger.warning("time_zone.unknown", time_zone=name, using="UTC")
        return UTC_ZONE


def format_local_time(moment_utc: datetime, zone: ZoneInfo) -> str:
    """Format a moment as `yyyy-MM-dd HH:mm:ss` in `zone`. A naive datetime counts as UTC."""
    if moment_utc.tzinfo is None:
        moment_utc = moment_utc.replace(tzinfo=UTC)
    local = moment_utc.astimezone(zone).replace(tzinfo=None)
    return local.isoformat(sep=" ", timespec="seconds")


def _iana_name_of_windows_zone(name: str) -> str | None:
    """Return the IANA name for a Windows time-zone name, or None when `name` is not one.

    The match ignores case and surrounding spaces.
    """
    return _IANA_NAME_BY_WINDOWS_KEY.get(_normalize_name(name))


def _date_part(value: date) -> date:
    # datetime is a subclass of date, so it must be tested for explicitly.
    return value.date() if isinstance(value, datetime) else value


def _normalize_name(name: str | None) -> str:
    return (name or "").strip().casefold()


def _one_month_later(day: date) -> date:
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    last_day = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last_day))
