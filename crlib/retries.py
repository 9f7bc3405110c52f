"""One retry policy for every HTTP client crlib builds, so a run survives throttling and
transient faults (429 with Retry-After, 5xx, connection resets) the same way on every path.

Three client stacks need it, each configured its own way:

- azure-core SDKs (azure-mgmt-*, azure-keyvault-secrets): keyword options. Their default skips
  POST on a lost connection; crlib's POSTs are safe to repeat (reads such as listKeys and
  checkNameAvailability; deactivate and provider registration are idempotent; importImage is
  checked by digest afterwards; a repeated generateCredentials leaves the password of the last
  answer, which is the one crlib stores), so POST is retried too.
- azure-iot-hub (msrest over requests): msrest's default treats 429 as final and retries three
  times; crlib gives it the urllib3 policy below.
- requests sessions (plain ARM calls) and python-dxf (the OCI data plane): the same urllib3
  policy, mounted on their sessions. python-dxf has no option for it, hence `RetryingDXF`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from urllib3.util.retry import Retry

if TYPE_CHECKING:
    import requests
    from dxf import DXF

_Session = TypeVar("_Session", bound="requests.Session")

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
ATTEMPTS = 6  # at 20 % faulted requests, seven faults in a row happen about once in 80 000 requests
CONNECT_ATTEMPTS = 2  # a refused connection is rarely transient: nothing listens there
BACKOFF_S = 0.2  # the first retry is immediate; then 0.4 s, 0.8 s ... capped below (Retry-After wins)
BACKOFF_MAX_S = 8


def is_certificate_failure(error: BaseException | None) -> bool:
    """Whether an error (requests', urllib3's, or ssl's, however wrapped) is a failed certificate
    verification, as opposed to a TLS connection that broke (an EOF or reset mid-handshake)."""
    import ssl

    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        pending += [*item.args, item.__cause__, item.__context__, getattr(item, "reason", None)]
    return False


class _NoTlsRetry(Retry):
    """urllib3 counts a failed certificate verification as an "other" error and retries it with
    backoff; no retry can make an untrusted certificate trusted, so it is raised at once. A TLS
    connection that breaks (a reset mid-handshake) is retried like any lost connection."""

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> Self:
        from urllib3.exceptions import MaxRetryError

        if is_certificate_failure(error):
            raise MaxRetryError(_pool, url or "", error)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def urllib3_retry() -> Retry:
    """For requests-based clients: every method, Retry-After honoured, the answer kept on exhaustion,
    a TLS verification failure final."""
    return _NoTlsRetry(total=ATTEMPTS, connect=CONNECT_ATTEMPTS, read=ATTEMPTS, status=ATTEMPTS, other=ATTEMPTS,
                 backoff_factor=BACKOFF_S, backoff_max=BACKOFF_MAX_S, status_forcelist=RETRY_STATUSES,
                 allowed_methods=None, respect_retry_after_header=True, raise_on_status=False)


def azure_core_options() -> dict:
    """Keyword options for azure-core clients: the retry policy, as an object, because azure-core
    reads the methods it retries after a lost connection only per request, not per client."""
    from azure.core.pipeline.policies import RetryPolicy

    class EveryMethodRetryPolicy(RetryPolicy):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._method_whitelist = frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "POST", "PATCH"})

    return {"retry_policy": EveryMethodRetryPolicy(
        retry_total=ATTEMPTS, retry_connect=CONNECT_ATTEMPTS, retry_read=ATTEMPTS, retry_status=ATTEMPTS,
        retry_backoff_factor=BACKOFF_S, retry_backoff_max=BACKOFF_MAX_S)}


def mount(session: _Session) -> _Session:
    """Mount the retry policy on a requests session (both schemes); returns the session."""
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(max_retries=urllib3_retry())
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def configure_msrest(service_client: Any) -> None:
    """An azure-iot-hub (msrest) service client: the urllib3 policy instead of msrest's default.

    msrest installs its policy when it opens a session, and the client opens one as it is built, so
    the policy is set in the configuration (for sessions to come) and installed again on the open
    session (msrest's `RequestsHTTPSender._init_session`, the one place it does that)."""
    policy = urllib3_retry()
    # msrest reads this urllib3 1.x attribute when it installs the policy (urllib3 2 has backoff_max).
    policy.BACKOFF_MAX = BACKOFF_MAX_S  # type: ignore[attr-defined]
    service_client.config.retry_policy.policy = policy
    sender = getattr(getattr(service_client.config, "pipeline", None), "_sender", None)
    driver = getattr(sender, "driver", None)
    if driver is not None:
        driver.config.retry_policy.policy = policy
        driver._init_session(driver.session)


def retrying_dxf(user_agent: str | None = None) -> type[DXF]:
    """python-dxf's DXF whose sessions retry (and send `user_agent`, when given). DXF sends through
    the first entry of `_sessions` (python-dxf 12): the `requests` module itself, or the session
    `__enter__` opens. Its sessions keep requests' `trust_env`, so HTTPS_PROXY and NO_PROXY apply as
    in the Azure SDKs, while DXF passes its `tlsverify` with every request, which the environment's
    CA bundle cannot replace."""
    import requests
    from dxf import DXF

    def prepared(session: requests.Session) -> requests.Session:
        if user_agent:
            session.headers["User-Agent"] = user_agent
        return mount(session)

    class RetryingDXF(DXF):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._sessions = [prepared(requests.Session())]

        def __enter__(self) -> Self:
            super().__enter__()
            prepared(cast(requests.Session, self._sessions[0]))  # the session DXF.__enter__ opened
            return self

    return RetryingDXF
