"""Column types shared by the platform's tables and chargeworker's own."""

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import BigInteger, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine

_SCALE = Decimal("0.0001")
_FACTOR = 10_000
# SQLite integers are 64-bit, so the largest amount there is 922,337,203,685,477.5807,
# below the NUMERIC(19,4) maximum of the other databases.
SQLITE_INTEGER_MAX = 2**63 - 1


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal with four places: NUMERIC(p,4), or integer ten-thousandths on SQLite.

    SQLite has no exact decimal type, so values are stored there as integers,
    which keeps floats away from money and sorts correctly. Values with more
    than four places are rounded half up.
    """

    impl = Numeric(19, 4)
    cache_ok = True

    def __init__(self, precision: int = 19) -> None:
        super().__init__()
        self.precision = precision

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, 4, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = Decimal(value).quantize(_SCALE, rounding=ROUND_HALF_UP)
        if dialect.name != "sqlite":
            return amount
        stored = int(amount * _FACTOR)
        if not -SQLITE_INTEGER_MAX - 1 <= stored <= SQLITE_INTEGER_MAX:
            raise ValueError(
                f"value {amount} is outside what SQLite stores as integer ten-thousandths "
                f"(at most {Decimal(SQLITE_INTEGER_MAX) / _FACTOR} in absolute value)"
            )
        return stored

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / _FACTOR).quantize(_SCALE)
        return Decimal(value).quantize(_SCALE)


class Money(ExactDecimal):
    """An amount of money: NUMERIC(19,4)."""

    cache_ok = True

    def __init__(self) -> None:
        super().__init__(19)
