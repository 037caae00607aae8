"""--debug: one line per Google and Kubernetes API call, on stderr:

    [api] sqladmin GET /v1/projects/p/instances/pg 200 0.084s

method, path (with the query), status and duration. Never a request or response body (a
Secret's data, a user's password) and never a header (credentials travel in Authorization);
query parameters named like credentials are dropped, although none of ours carry one.
"""

from __future__ import annotations

import logging
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit

LOG = logging.getLogger("mlflow_helm.api")
SECRET_PARAMS = ("token", "key", "password", "secret", "signature", "sig", "credential")


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (not when enabled)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def enable(on: bool = True) -> None:
    """Turn the log on (the CLI's --debug) or off."""
    if not LOG.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("[api] %(message)s"))
        LOG.addHandler(handler)
        LOG.propagate = False
    LOG.setLevel(logging.DEBUG if on else logging.WARNING)


def shown(url: str) -> str:
    """The URL's path and query as logged: no scheme or host, no credential-like parameter."""
    parts = urlsplit(url)
    # alt=json is the Google client's on every call: noise.
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not any(s in k.lower() for s in SECRET_PARAMS) and (k, v) != ("alt", "json")]
    return parts.path + (f"?{urlencode(query)}" if query else "")


def call(api: str, method: str, url: str, status: int | str, seconds: float) -> None:
    if LOG.isEnabledFor(logging.DEBUG):
        LOG.debug("%s %s %s %s %.3fs", api, method, shown(url), status, seconds)


def requests_hook(api: str):
    """A `requests` response hook (google-cloud-storage's session) that logs each call."""

    def hook(response, *args, **kwargs):
        call(api, response.request.method, response.request.url, response.status_code,
             response.elapsed.total_seconds())
        return response

    return hook
