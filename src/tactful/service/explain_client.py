"""``tactful explain --url``: ask a running worker for a customer's timeline."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit

from tactful.core.errors import TactfulError

RETRIES = 5  # a 503 (the group is moving partitions) is asked again, a second apart


class ExplainError(TactfulError):
    """The worker could not be asked, or refused."""


def fetch_timeline(url: str, customer_id: str, token: str | None, timeout: float = 15.0) -> bytes:
    """The JSON timeline of ``customer_id`` from the worker at ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ExplainError(f"--url must be http://host:port, got {url!r}")
    if not token:
        raise ExplainError("TACTFUL_ADMIN_TOKEN must be set to the workers' admin token")
    target = f"{url.rstrip('/')}/customers/{quote(customer_id, safe='')}/decisions"
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        target, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    for attempt in range(RETRIES):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 503 and attempt + 1 < RETRIES:
                time.sleep(1.0)
                continue
            raise ExplainError(_refused(exc.code, url)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ExplainError(f"cannot reach {url}: {reason}") from None
    raise AssertionError("unreachable")


def _refused(status: int, url: str) -> str:
    if status == 401:
        return f"{url} refused the admin token (TACTFUL_ADMIN_TOKEN differs from the worker's)"
    if status == 404:
        return f"{url} has no admin API (the worker runs without TACTFUL_ADMIN_TOKEN)"
    if status == 400:
        return "not a customer id the worker accepts"
    if status == 503:
        return f"{url}: no worker can answer now (the group is rebalancing); try again"
    return f"{url} answered HTTP {status}"
