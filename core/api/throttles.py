"""API throttles: per IP for anonymous callers, per user for authenticated ones, per rail for webhooks.

Rates come from settings.API_THROTTLE_RATES (env API_THROTTLE_ANON, API_THROTTLE_USER,
API_THROTTLE_WEBHOOK: "30/minute", "off" for none) and are read on each request, so a test or an
operator can change them without re-importing DRF. A throttled call answers 429 problem JSON with
Retry-After (core/api/problems.py). Counts live in the default cache (Redis: shared by every web
process).
"""

from __future__ import annotations

import structlog
from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

log = structlog.get_logger(__name__)


class _SettingsRate:
    def get_rate(self):
        rate = settings.API_THROTTLE_RATES.get(self.scope)
        return None if rate in (None, "", "off") else rate

    def allow_request(self, request, view):
        # Fails open: with the cache (Redis) unreachable the API still answers, unthrottled.
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - any cache failure
            log.warning("api.throttle_unavailable", scope=self.scope, error=str(exc))
            return True


class AnonThrottle(_SettingsRate, AnonRateThrottle):
    pass


class UserThrottle(_SettingsRate, UserRateThrottle):
    pass


class WebhookThrottle(_SettingsRate, SimpleRateThrottle):
    """Per rail and IP: a rail retrying a burst of events is not throttled by other callers' traffic."""

    scope = "webhook"

    def get_cache_key(self, request, view):
        provider = view.kwargs.get("provider", "")
        return self.cache_format % {"scope": self.scope, "ident": f"{provider}:{self.get_ident(request)}"}
