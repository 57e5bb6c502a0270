"""Round and format money amounts, which are always `Decimal` and never float."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def round_money(value: Decimal | int | str | None) -> Decimal:
    """Round an amount half up to the cent, so 0.005 becomes 0.01. None counts as zero.

    `ROUND_HALF_UP` rounds halves away from zero, so -0.005 becomes -0.01. A float or
    bool is rejected with `TypeError`, because a float has already lost the exact
    value. A value that is not a finite number raises `ValueError` naming it.
    """
    if value is None:
        return ZERO
    if isinstance(value, float | bool):
        kind = type(value).__name__
        raise TypeError(f"amount {value!r} must be a Decimal, int or str, not {kind}")

    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"amount {value!r} is not a decimal number") from exc
    if not amount.is_finite():
        raise ValueError(f"amount {value!r} is not a finite number")

    try:
        rounded = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        # The default context keeps 28 digits, far more than NUMERIC(19,4) stores.
        raise ValueError(f"amount {value!r} has too many digits to round to the cent") from exc

    # Rounding a small negative amount gives -0.00, which would print with its sign.
    return ZERO if rounded.is_zero() else rounded


def format_money(value: Decimal) -> str:
    """Format an amount with exactly two decimal places and no exponent, as `12.50` or `-3.00`."""
    return f"{round_money(value):f}"
