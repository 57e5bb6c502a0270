"""Render the charge list: the tab-separated file of a queue's or file's charge-queue rows.

The file is UTF-8 with LF line ends: a header line, one line per row and a
footer line that holds only the sum of `ChargeAmount`.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from chargeworker.charges.dates import format_rev_date
from chargeworker.charges.money import ZERO, format_money, round_money

HEADER = (
    "MSISDN",
    "IsSuccessful",
    "ChargeId",
    "ChargeAmount",
    "SMSChargeId",
    "SMSChargeAmount",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "DateCharged",
    "ErrorMessage",
)
CHARGE_AMOUNT_COLUMN = HEADER.index("ChargeAmount")

# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@")
LINE_BREAK_TABLE = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


@dataclass(frozen=True)
class ChargeListRow:
    """One charge-queue row as the charge list shows it."""

    msisdn: str
    is_successful: bool
    charge_id: int | None
    charge_amount: Decimal
    sms_charge_id: int | None
    sms_charge_amount: Decimal
    billing_period_start: date | None
    billing_period_end: date | None
    date_charged: str
    error_message: str


def render_charge_list(rows: Iterable[ChargeListRow]) -> bytes:
    """Render the rows, in the given order, as the UTF-8 bytes of a charge-list file."""
    lines = ["\t".join(HEADER)]
    total = ZERO
    for row in rows:
        lines.append("\t".join(_row_fields(row)))
        total += round_money(row.charge_amount)

    footer = [""] * len(HEADER)
    footer[CHARGE_AMOUNT_COLUMN] = format_money(total)
    lines.append("\t".join(footer))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _row_fields(row: ChargeListRow) -> list[str]:
    return [
        _text_field(row.msisdn),
        "True" if row.is_successful else "False",
        _charge_id_field(row.charge_id),
        format_money(row.charge_amount),
        _charge_id_field(row.sms_charge_id),
        format_money(row.sms_charge_amount),
        _date_field(row.billing_period_start),
        _date_field(row.billing_period_end),
        _text_field(row.date_charged),
        _text_field(row.error_message),
    ]


def _text_field(value: str) -> str:
    """Replace tabs and line breaks with spaces and neutralize a leading formula character.

    Leading spaces are skipped when looking for the formula character, because some
    spreadsheets trim them before they parse the cell.
    """
    text = value.translate(LINE_BREAK_TABLE)
    if text.lstrip(" ").startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _charge_id_field(charge_id: int | None) -> str:
    # Rev.io charge ids are positive, and the platform writes 0 and -1 for "no charge".
    if charge_id is None or charge_id <= 0:
        return ""
    return str(charge_id)


def _date_field(value: date | None) -> str:
    return "" if value is None else format_rev_date(value)
