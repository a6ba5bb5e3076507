"""Delivering one alert through one channel: Django's e-mail backend, or apprise.

A failure raises DeliveryFailed with a message fit for the alert history: apprise's
own words, with every part of the channel's URL that could be a secret masked.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit

import apprise
from django.conf import settings
from django.core.mail import send_mail

from cms.inventory.secrets import MASK

from .models import Channel

# A part of a URL this long may be a token (slack://T0/B0/XXXX, tgram://bot-token/...).
_SECRET_PART = 4


class DeliveryFailed(Exception):
    """The channel did not take the alert; the message holds no secret."""


def send(channel: Channel, subject: str, body: str) -> None:
    if channel.type == Channel.EMAIL:
        _send_mail(channel, subject, body)
    else:
        _send_apprise(channel.url.reveal(), subject, body)


def _send_mail(channel: Channel, subject: str, body: str) -> None:
    addresses = channel.addresses()
    if not addresses:
        raise DeliveryFailed("the channel has no e-mail address")
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, addresses, fail_silently=False)
    except Exception as exc:  # smtplib, socket, backend: all a failed delivery
        raise DeliveryFailed(f"the mail server refused the alert: {exc}") from exc


def _send_apprise(url: str, subject: str, body: str) -> None:
    notifier = apprise.Apprise()
    if not url or not notifier.add(url):
        raise DeliveryFailed("the channel's URL is not one apprise supports")
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = bool(notifier.notify(title=subject, body=body))
    if not ok:
        said = " ".join(captured.getvalue().split())[-500:] or "no answer"
        raise DeliveryFailed(f"apprise could not deliver the alert: {mask(said, url)}")


def secret_parts(url: str) -> list[str]:
    """The parts of `url` that may be secret: user, password, path segments, query
    values; longest first, so a part inside another is masked with it."""
    parts = urlsplit(url)
    found = {parts.username or "", parts.password or ""}
    found.update(segment for segment in parts.path.split("/"))
    found.update(re.split(r"[&=]", parts.query))
    found |= {unquote(p) for p in found}
    return sorted((p for p in found if len(p) >= _SECRET_PART), key=len, reverse=True)


def mask(text: str, url: str) -> str:
    for part in [url, *secret_parts(url)]:
        if part:
            text = text.replace(part, MASK)
    return text
