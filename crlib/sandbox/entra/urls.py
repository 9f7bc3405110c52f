"""Routes for Entra ID. Token requests are POSTs that only read: they never count as writes."""

from . import responses

URLS = [
    ("GET", "/{tenant}/.well-known/openid-configuration", responses.openid_configuration),
    ("GET", "/{tenant}/v2.0/.well-known/openid-configuration", responses.openid_configuration),
    ("GET", "/{tenant}/discovery/keys", responses.keys),
    ("GET", "/{tenant}/discovery/v2.0/keys", responses.keys),
    ("POST", "/{tenant}/oauth2/token", responses.token, False),
    ("POST", "/{tenant}/oauth2/v2.0/token", responses.token, False),
    ("GET", "/common/discovery/instance", responses.instance_discovery),
]
