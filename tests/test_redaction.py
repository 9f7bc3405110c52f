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
