"""Handlers of the sample job types. They simulate work; the demo shows their outcomes."""

from __future__ import annotations

import random
import time

from conveyor import JobContext, PermanentError, RetryLater
from sample_jobs.payloads import OrderPlaced, RenderInvoice, ResizeImage, SendEmail, Thumbnail

#: Simulated work per job, small so the demo is quick.
WORK_S = 0.05


def resize_image(payload: ResizeImage, ctx: JobContext) -> None:
    """Pretend to resize an image."""
    time.sleep(WORK_S)
    ctx.log.info("image resized", width_px=payload.width_px)


def make_thumbnail(payload: Thumbnail, ctx: JobContext) -> None:
    """Flaky on purpose: about half of the first two attempts fail with a transient error."""
    if ctx.attempt <= 2 and random.random() < 0.5:
        raise RetryLater("thumbnail service busy (simulated)")
    time.sleep(WORK_S)
    ctx.log.info("thumbnail made", size_px=payload.size_px)


def charge_order(payload: OrderPlaced, ctx: JobContext) -> None:
    """Pretend to charge an order (billing's side of order.placed)."""
    time.sleep(WORK_S)
    ctx.log.info("order charged", order_id=payload.order_id, currency=payload.currency)


def send_receipt(payload: OrderPlaced, ctx: JobContext) -> None:
    """Pretend to e-mail a receipt (notifications' side of order.placed)."""
    time.sleep(WORK_S)
    ctx.log.info("receipt sent", order_id=payload.order_id)


def send_email(payload: SendEmail, ctx: JobContext) -> None:
    """Pretend to send an e-mail."""
    time.sleep(WORK_S)
    ctx.log.info("email sent", subject_chars=len(payload.subject))


def render_invoice(payload: RenderInvoice, ctx: JobContext) -> None:
    """Always fails permanently: the invoice template does not exist."""
    raise PermanentError(f"invoice template {payload.template!r} not found")
