"""Column types shared by the platform's tables and chargeworker's own."""

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine

_SCALE = Decimal("0.0001")
_FACTOR = 10_000


class Money(TypeDecorator[Decimal]):
    """An exact amount: NUMERIC(19,4), or integer ten-thousandths on SQLite.

    SQLite has no exact decimal type, so amounts are stored there as integers,
    which keeps floats away from money and sorts correctly.
    """

    impl = Numeric(19, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(19, 4, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = Decimal(value).quantize(_SCALE)
        if dialect.name == "sqlite":
            return int(amount * _FACTOR)
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / _FACTOR).quantize(_SCALE)
        return Decimal(value).quantize(_SCALE)
