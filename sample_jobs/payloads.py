"""Payload models of the sample job types (the API validates requests against them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

#: Deliberately loose (no email-validator dependency):
#: the shape of an address, not its deliverability.
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResizeImage(_Payload):
    """Resize an image to a width, keeping its aspect ratio."""

    image_url: HttpUrl
    width_px: Annotated[int, Field(gt=0, le=10_000)]


class Thumbnail(_Payload):
    """Make a square thumbnail of an image."""

    image_url: HttpUrl
    size_px: Annotated[int, Field(gt=0, le=1_024)] = 128


class OrderPlaced(_Payload):
    """An order was placed: charge it (billing) and e-mail a receipt (notifications)."""

    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    customer_email: Email
    amount: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"


class SendEmail(_Payload):
    """Send one e-mail."""

    to: Email
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(max_length=20_000)] = ""


class RenderInvoice(_Payload):
    """Render an order's invoice as PDF."""

    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    template: str = "default"
