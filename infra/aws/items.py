"""DynamoDB attribute values, as the low-level client takes them (the ledger, the timer table)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


def string_value(value: str) -> AttributeValueTypeDef:
    """``{"S": value}``."""
    return {"S": value}


def whole_number_value(value: float) -> AttributeValueTypeDef:
    """``{"N": …}`` of ``value`` truncated to an integer (epoch seconds, counters)."""
    return {"N": str(int(value))}
