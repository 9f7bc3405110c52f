"""Admin routes of the cluster agents (main port, OPEN)."""

from . import responses

URLS = [
    ("GET", "/_sandbox/arc/clusters/{name}/extensions/{extension}/forward", responses.forward),
]
