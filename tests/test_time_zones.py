"""Tests of `resolve_time_zone` with the Windows time-zone names that the platform stores."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from chargeworker.charges.dates import resolve_time_zone
from chargeworker.charges.windows_zones import WINDOWS_TO_IANA

WINTER = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SUMMER = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)


def utc_offset(zone: ZoneInfo, moment: datetime) -> timedelta | None:
    return moment.astimezone(zone).utcoffset()


@pytest.mark.parametrize(
    ("windows_name", "iana_name"),
    [
        ("Central Standard Time", "America/Chicago"),
        ("Eastern Standard Time", "America/New_York"),
        ("Mountain Standard Time", "America/Denver"),
        ("US Mountain Standard Time", "America/Phoenix"),
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("Alaskan Standard Time", "America/Anchorage"),
        ("Hawaiian Standard Time", "Pacific/Honolulu"),
        ("Atlantic Standard Time", "America/Halifax"),
        ("Newfoundland Standard Time", "America/St_Johns"),
        ("Canada Central Standard Time", "America/Regina"),
        ("Central Standard Time (Mexico)", "America/Mexico_City"),
        ("US Eastern Standard Time", "America/Indiana/Indianapolis"),
        ("UTC", "Etc/UTC"),
        ("GMT Standard Time", "Europe/London"),
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("Central Europe Standard Time", "Europe/Budapest"),
        ("E. Europe Standard Time", "Europe/Chisinau"),
        ("India Standard Time", "Asia/Kolkata"),
        ("China Standard Time", "Asia/Shanghai"),
        ("Tokyo Standard Time", "Asia/Tokyo"),
        ("AUS Eastern Standard Time", "Australia/Sydney"),
    ],
)
def test_windows_name_resolves(windows_name: str, iana_name: str) -> None:
    with capture_logs() as logs:
        zone = resolve_time_zone(windows_name)

    assert zone == ZoneInfo(iana_name)
    assert logs == []


def test_central_standard_time_is_chicago() -> None:
    assert resolve_time_zone("Central Standard Time").key == "America/Chicago"


@pytest.mark.parametrize(
    "windows_name",
    [
        "central standard time",
        "CENTRAL STANDARD TIME",
        "  Central Standard Time\t",
        "\nCENTRAL standard time ",
    ],
)
def test_windows_name_ignores_case_and_spaces(windows_name: str) -> None:
    assert resolve_time_zone(windows_name).key == "America/Chicago"


def test_inner_spaces_still_matter() -> None:
    with capture_logs() as logs:
        zone = resolve_time_zone("Central  Standard Time")

    assert zone == ZoneInfo("UTC")
    assert [entry["event"] for entry in logs] == ["time_zone.unknown"]


@pytest.mark.parametrize(("windows_name", "iana_name"), sorted(WINDOWS_TO_IANA.items()))
def test_every_mapped_zone_exists(windows_name: str, iana_name: str) -> None:
    with capture_logs() as logs:
        zone = resolve_time_zone(windows_name)

    assert zone.key == iana_name
    assert logs == []


def test_mapping_covers_common_zones() -> None:
    assert 60 <= len(WINDOWS_TO_IANA) <= 140


def test_mapping_keys_unique_ignoring_case() -> None:
    folded = [name.casefold() for name in WINDOWS_TO_IANA]

    assert len(set(folded)) == len(folded)


def test_mapping_keys_have_no_outer_spaces() -> None:
    for windows_name in WINDOWS_TO_IANA:
        assert windows_name == windows_name.strip(), windows_name


@pytest.mark.parametrize(
    ("windows_name", "hours"),
    [
        ("UTC-11", -11),
        ("UTC-09", -9),
        ("UTC-08", -8),
        ("UTC-02", -2),
        ("UTC+12", 12),
        ("UTC+13", 13),
    ],
)
def test_fixed_offset_zone_sign(windows_name: str, hours: int) -> None:
    # The Etc/GMT zones use POSIX signs, so "UTC-08" must become Etc/GMT+8, not Etc/GMT-8.
    zone = resolve_time_zone(windows_name)

    assert utc_offset(zone, WINTER) == timedelta(hours=hours)
    assert utc_offset(zone, SUMMER) == timedelta(hours=hours)


@pytest.mark.parametrize(
    ("windows_name", "winter_hours", "summer_hours"),
    [
        ("Eastern Standard Time", -5, -4),
        ("Central Standard Time", -6, -5),
        ("Mountain Standard Time", -7, -6),
        ("US Mountain Standard Time", -7, -7),
        ("Pacific Standard Time", -8, -7),
        ("GMT Standard Time", 0, 1),
        ("Romance Standard Time", 1, 2),
        ("India Standard Time", 5.5, 5.5),
        ("Tokyo Standard Time", 9, 9),
        ("AUS Eastern Standard Time", 11, 10),
    ],
)
def test_windows_zone_offsets(windows_name: str, winter_hours: float, summer_hours: float) -> None:
    zone = resolve_time_zone(windows_name)

    assert utc_offset(zone, WINTER) == timedelta(hours=winter_hours)
    assert utc_offset(zone, SUMMER) == timedelta(hours=summer_hours)


@pytest.mark.parametrize("name", ["Central Daylight Time", "Mars Standard Time", "Standard Time"])
def test_unknown_windows_name_is_utc_with_warning(name: str) -> None:
    with capture_logs() as logs:
        zone = resolve_time_zone(name)

    assert zone == ZoneInfo("UTC")
    assert [entry["event"] for entry in logs] == ["time_zone.unknown"]
    assert logs[0]["time_zone"] == name


def test_iana_name_still_resolves() -> None:
    with capture_logs() as logs:
        zone = resolve_time_zone("Asia/Kolkata")

    assert zone.key == "Asia/Kolkata"
    assert logs == []
