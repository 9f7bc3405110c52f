"""One masker serves every output path: exceptions, log records from any logger, reprs."""

from __future__ import annotations

import logging
import secrets as random

from crlib.errors import StepFailed
from crlib.secrets import MASK, MASKER, install_log_redaction, mask


def test_error_messages_never_carry_a_known_secret():
    secret = random.token_urlsafe(30)
    mask(secret, "sync-password")
    error = StepFailed("deploy", f"IoT Hub refused: body echoed SyncTokenPassword={secret}")
    assert secret not in str(error) and secret not in error.message and MASK in str(error)


def test_log_records_of_every_logger_are_masked(caplog):
    secret = random.token_urlsafe(30)
    MASKER.register(secret)
    install_log_redaction()
    with caplog.at_level(logging.INFO):
        for name in ("crlib.runbook", "azure.core.pipeline", "somewhere.else"):
            logging.getLogger(name).info("connection string HostName=x;SharedAccessKey=%s", secret)
    assert len(caplog.records) == 3
    assert all(secret not in r.getMessage() and MASK in r.getMessage() for r in caplog.records)


def test_hub_access_repr_hides_the_connection_string():
    from crlib.azure.readers import HubAccess

    secret = random.token_urlsafe(30)
    access = HubAccess("/id", "hub", "127.0.0.1:1", f"HostName=h;SharedAccessKey={secret}")
    assert secret not in repr(access)


KEYED = [
    ("HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey={v}", "SharedAccessKey"),
    ("ConnectedRegistryName=c;SyncTokenName=c;SyncTokenPassword={v};ParentGatewayEndpoint=e", "SyncTokenPassword"),
    ("https://a.blob.core.windows.net/c?sv=2022-11-02&sig={v}&se=2030-01-01", "sig"),
    ("SharedAccessSignature sr=h%2Fdevices%2Fd&sig={v}&se=1700000000", "sig"),
    ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey={v};EndpointSuffix=core.windows.net", "AccountKey"),
    ('{{"connection": "HostName=h;SharedAccessKey={v}"}}', "SharedAccessKey"),
    ("sharedaccesskey='{v}' in a quoted value", "sharedaccesskey"),
]


def test_keyed_secrets_are_masked_by_pattern_though_never_registered():
    for template, key in KEYED:
        value = random.token_urlsafe(24).replace("-", "+").replace("_", "/")  # base64-ish, never registered
        shown = MASKER.redact(template.format(v=value))
        assert value not in shown, shown
        assert f"{key}={MASK}" in shown.replace("='", "="), shown


def test_pattern_masking_keeps_what_surrounds_the_value():
    text = "HostName=h;DeviceId=d;SharedAccessKey=abc123==;ModuleId=m"
    assert MASKER.redact(text) == f"HostName=h;DeviceId=d;SharedAccessKey={MASK};ModuleId=m"
    assert MASKER.redact(MASKER.redact(text)) == MASKER.redact(text)
    # A JSON document stays JSON: the value stops at a quote, or the backslash escaping one.
    import json

    doc = json.dumps({"a": 'SyncTokenPassword=p4ss"word', "b": "sig=xyz"})
    assert json.loads(MASKER.redact(doc))["b"] == f"sig={MASK}"
    # Words that merely end in a key name are not keys.
    assert MASKER.redact("design=xyz; mysig=1; SharedAccessKeyName=iothubowner") == \
        "design=xyz; mysig=1; SharedAccessKeyName=iothubowner"


def test_an_error_quoting_a_connection_string_shows_no_key():
    key = random.token_urlsafe(30)
    error = StepFailed("hub", f"refused: HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={key}")
    assert key not in str(error) and f"SharedAccessKey={MASK}" in str(error)


def test_an_archived_error_quoting_a_signed_blob_url_keeps_no_signature():
    """requests puts the whole URL in its errors; a data endpoint's redirect carries `sig=`."""
    from crlib.archive import scan_bytes, scrub

    signature = random.token_urlsafe(32)
    error = (f"403 Client Error: Forbidden for url: https://127.0.0.1:4443/reg//docker/registry/v2/blobs/sha256/ab/"
             f"{'ab' * 32}/data?se=2026-12-03T01%3A00%3A00Z&sp=r&spr=https&sig={signature}")
    assert scan_bytes(error.encode(), []) == ["a SAS signature"]
    text, masked = scrub(error, [], [])
    assert signature not in text and masked == 1 and text.endswith(f"&sig={MASK}")
    assert scan_bytes(text.encode(), []) == []
    assert scrub(text, [], []) == (text, 0)  # already masked: not counted again
