"""Build the descriptions of the charges sent to Rev.io.

`UsageMB` is written with exactly two decimal places, rounded half up like money.
Rev.io accepts at most 1500 characters, so longer descriptions are cut.
"""

from decimal import Decimal

from chargeworker.charges.money import format_money

MAX_DESCRIPTION_LENGTH = 1500


def rate_description(rate_plan_name: str, usage_mb: Decimal) -> str:
    """Describe a `rate` charge line: "{RatePlanName} - {UsageMB} MB"."""
    return _fit(f"{rate_plan_name} - {format_money(usage_mb)} MB")


def overage_description(usage_mb: Decimal) -> str:
    """Describe an `overage` charge line: "Overage data usage {UsageMB} MB"."""
    return _fit(f"Overage data usage {format_money(usage_mb)} MB")


def sms_description(sms_usage: int) -> str:
    """Describe an `sms` charge line: "Billable SMS usage: {SmsUsage}"."""
    return _fit(f"Billable SMS usage: {sms_usage}")


def usage_description(usage_mb: Decimal) -> str:
    """Describe a single-usage `usage` charge line: "Billable data usage: {UsageMB} MB"."""
    return _fit(f"Billable data usage: {format_money(usage_mb)} MB")


def _fit(description: str) -> str:
    return description[:MAX_DESCRIPTION_LENGTH]
