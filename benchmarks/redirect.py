"""Data-endpoint redirect: what the 307 to a signed URL costs a pull, side by side in one run.

Two Premium registries in one sandbox, one with its dedicated data endpoint on (every blob GET on
the login server answers 307 and the client fetches the signed URL from the data endpoint), one
without (the login server serves the blob). Each holds the same blobs: one of LARGE_MIB MiB and
SMALL_COUNT of SMALL_KIB KiB. Alternating, RUNS times each, python-dxf (the client crlib's checks
and the simulated connected registries use) pulls them through the login server with an admin
token, digests verified as it reads:

  * large: MB/s of the one large blob (the redirect costs one round trip; the bytes flow once);
  * small: milliseconds per small blob (the round trip is the whole cost here).

Ratios = redirected / direct: throughput for the large blob (1.0 = no cost), time per small blob
(1.0 = no cost, 2.0 = a second request's worth). Medians of RUNS.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
import uuid

import _common as c

NAME = "redirect"
TARGET = "large-blob throughput >= 0.9 of direct; small-blob time reported"
MIB, KIB = 1024 * 1024, 1024
LARGE_MIB, SMALL_KIB, SMALL_COUNT = 128, 4, 40
RUNS = 5
REPOSITORY = "bench-redirect"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registries(status: dict):
    """(registry with the data endpoint, registry without), each with an admin token's name and password."""
    import requests
    from azure.identity import ClientSecretCredential
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.containerregistry import models as m

    credential = ClientSecretCredential(status["tenant_id"], status["client_id"], status["client_secret"],
                                        authority=status["authority"], disable_instance_discovery=True,
                                        connection_verify=status["ca_bundle"])
    kwargs = {"base_url": status["arm_endpoint"], "connection_verify": status["ca_bundle"],
              "credential_scopes": ["https://management.azure.com/.default"]}
    group = f"rg-bench-{uuid.uuid4().hex[:8]}"
    arm_token = credential.get_token("https://management.azure.com/.default").token
    requests.put(f"{status['arm_endpoint']}/subscriptions/{status['subscription_id']}/resourcegroups/{group}",
                 params={"api-version": "2021-04-01"}, json={"location": "westus"}, verify=status["ca_bundle"],
                 headers={"Authorization": f"Bearer {arm_token}"}, timeout=30).raise_for_status()
    acr = ContainerRegistryManagementClient(credential, status["subscription_id"], **kwargs)
    made = []
    for data_endpoint in (True, False):
        name = f"bench{uuid.uuid4().hex[:8]}"
        registry = acr.registries.begin_create(group, name, m.Registry(
            location="westus", sku=m.Sku(name="Premium"), data_endpoint_enabled=data_endpoint)).result()
        token = acr.tokens.begin_create(group, name, f"tok{uuid.uuid4().hex[:6]}", m.Token(
            scope_map_id=f"{registry.id}/scopeMaps/_repositories_admin")).result()
        password = acr.registries.begin_generate_credentials(group, name, m.GenerateCredentialsParameters(
            token_id=token.id, name="password1")).result().passwords[0].value
        made.append((registry, token.name, password))
    return made


def client(host: str, ca: str, username: str, password: str):
    from dxf import DXF

    def auth(dxf, response):
        dxf.authenticate(username, password, response=response)

    return DXF(host, REPOSITORY, auth=auth, tlsverify=ca)


def timed_pull(dxf, digests: list[str]) -> float:
    started = time.perf_counter()
    for blob in digests:
        for _ in dxf.pull_blob(blob, chunk_size=MIB):  # dxf checks each digest as the last chunk arrives
            pass
    return time.perf_counter() - started


def main() -> None:
    large = os.urandom(LARGE_MIB * MIB)
    small = [os.urandom(SMALL_KIB * KIB) for _ in range(SMALL_COUNT)]
    large_digest, small_digests = digest(large), [digest(s) for s in small]
    with c.sandbox() as (status, _):
        ca = status["ca_bundle"]
        (redirected, r_user, r_password), (direct, d_user, d_password) = registries(status)
        clients = {"redirected": client(redirected.login_server, ca, r_user, r_password),
                   "direct": client(direct.login_server, ca, d_user, d_password)}
        for dxf in clients.values():
            for blob, data in [(large_digest, large), *zip(small_digests, small, strict=True)]:
                dxf.push_blob(data=iter([data]), digest=blob)
        seq = c.last_seq(status)
        times: dict[str, dict[str, list[float]]] = {k: {"large": [], "small": []} for k in clients}
        for run in range(RUNS):
            c.say(f"run {run + 1} of {RUNS} ...")
            for kind, dxf in clients.items():
                times[kind]["large"].append(timed_pull(dxf, [large_digest]))
                times[kind]["small"].append(timed_pull(dxf, small_digests))
        rows = c.requests_since(status, seq)
    hops = {"redirects (307)": sum(1 for r in rows if r["status"] == 307),
            "signed-URL GETs on the data endpoint": sum(1 for r in rows if r["path"].endswith("/data")
                                                        and r["host"] == redirected.data_endpoint_host_names[0]),
            "blob GETs served by the direct login server": sum(1 for r in rows if r["host"] == direct.login_server
                                                               and "/blobs/" in r["path"] and r["status"] == 200)}
    medians = {kind: {size: statistics.median(values) for size, values in by.items()} for kind, by in times.items()}
    mb = LARGE_MIB * MIB / 1e6
    throughput = {kind: mb / medians[kind]["large"] for kind in clients}
    per_small_ms = {kind: medians[kind]["small"] * 1000 / SMALL_COUNT for kind in clients}
    ratio = throughput["redirected"] / throughput["direct"]
    small_ratio = per_small_ms["redirected"] / per_small_ms["direct"]
    print(f"redirect: python-dxf pulls through the login server, data endpoint on (307) vs off, {RUNS} runs\n")
    print(c.table(["", f"{LARGE_MIB} MiB blob MB/s", f"ms per {SMALL_KIB} KiB blob"],
                  [[kind, throughput[kind], per_small_ms[kind]] for kind in clients]
                  + [["redirected / direct", ratio, small_ratio]]))
    print()
    print(c.table(["request log", "count"], [[k, v] for k, v in hops.items()]))
    expected = RUNS * (1 + SMALL_COUNT)
    if hops["redirects (307)"] != expected or hops["signed-URL GETs on the data endpoint"] != expected:
        raise SystemExit(f"expected {expected} redirects and signed GETs, saw {hops}")
    c.finish(NAME, ratio, TARGET, {"runs": RUNS, "large_mib": LARGE_MIB, "small_kib": SMALL_KIB,
                                   "small_count": SMALL_COUNT, "throughput_mb_s": throughput,
                                   "ms_per_small_blob": per_small_ms, "small_blob_time_ratio": small_ratio,
                                   "times_s": times, "request_log": hops})


if __name__ == "__main__":
    main()
