"""Nobody gets access they were not given: every token, repository and action, at the cloud
registry and at the device endpoint, including a rotated password, a disabled token, a token that
is not attached to the connected registry, and no token at all."""

from __future__ import annotations

import itertools
import uuid

import pytest
import requests
from azure.mgmt.containerregistry import models as acr
from dxf import DXF
from dxf.exceptions import DXFUnauthorizedError
from reliability_kit import context
from testkit import push_small_image, wait_for

from crlib import runbook
from crlib.azure.names import client_token_secret as secret_purpose
from crlib.azure.readers import connected_registry as fetch_connected_registry
from crlib.sandbox import control

ACTIONS = {"pull": "content/read", "push": "content/write", "delete": "content/delete", "list": "metadata/read"}
REPOSITORIES = ["hello-world", "team/app"]


def _attempt(client: DXF, action: str, repository: str) -> bool:
    """True when the registry let the request through (any answer but 401/403)."""
    try:
        if action == "pull":
            client.head_manifest_and_response("latest" if repository == "hello-world" else "v1")
        elif action == "list":
            client.list_aliases()
        elif action == "push":
            push_small_image(client, f"matrix-{uuid.uuid4().hex[:8]}", "matrix")
        else:
            client.del_blob("sha256:" + "0" * 64)  # authorised: 404 (no such blob); refused: 401/403
    except DXFUnauthorizedError:
        return False
    except requests.HTTPError as exc:
        return exc.response.status_code not in (401, 403)
    return True


@pytest.fixture(scope="module")
def deployed(faulty_sandbox, tmp_path_factory):
    """A ReadWrite site with two repositories, reader and writer tokens, plus tokens made outside
    crlib: one not attached, one disabled (attached), and a writer whose password was rotated."""
    import yaml
    from testkit import site_data

    from crlib import params

    data = site_data(faulty_sandbox)
    tag = data["site"].removeprefix("t-")
    data["secrets"] = {"store": "local", "local_dir": str(tmp_path_factory.mktemp("matrix-secrets"))}
    data["connected_registry"]["repositories"] = REPOSITORIES
    writers = {"hello-world": list(ACTIONS.values()), "team/app": ["content/read", "content/write", "metadata/read"]}
    data["client_access"] = {
        "scope_maps": {f"readers-{tag}": {"hello-world": ["content/read", "metadata/read"]}, f"writers-{tag}": writers},
        "tokens": [{"name": f"reader-{tag}", "scope_map": f"readers-{tag}"},
                   {"name": f"writer-{tag}", "scope_map": f"writers-{tag}"},
                   {"name": f"rotated-{tag}", "scope_map": f"writers-{tag}"}]}
    data["checks"] = {"pull_image": "hello-world:latest", "push_repository": "hello-world",
                      "client_token": f"writer-{tag}"}
    site = params.load(yaml.safe_load(yaml.safe_dump(data)))
    ctx = context(site)
    runbook.run(ctx)
    rg, name = site.resource_group, site.registry.name
    registry = ctx.clients.acr.registries.get(rg, name)
    passwords = {t.name: ctx.get_secret(secret_purpose(t.name)) for t in site.client_access.tokens}
    # team/app needs an image before anything can pull it.
    with DXF(registry.login_server, "team/app", tlsverify=faulty_sandbox["ca_bundle"],
             auth=lambda d, r: d.authenticate(f"writer-{tag}", passwords[f"writer-{tag}"], response=r)) as cloud:
        push_small_image(cloud, "v1", "team app")
    maps = {m.name: m.id for m in ctx.clients.acr.scope_maps.list(rg, name)}
    tokens = ctx.clients.acr.tokens
    for extra, status, scope in ((f"unattached-{tag}", "enabled", f"writers-{tag}"),
                                 (f"disabled-{tag}", "enabled", f"readers-{tag}")):
        tokens.begin_create(rg, name, extra, acr.Token(scope_map_id=maps[scope], status=status)).result()
        generated = ctx.clients.acr.registries.begin_generate_credentials(
            rg, name, acr.GenerateCredentialsParameters(token_id=tokens.get(rg, name, extra).id, name="password1")
        ).result()
        passwords[extra] = generated.passwords[0].value
    tokens.begin_update(rg, name, f"disabled-{tag}", acr.TokenUpdateParameters(status="disabled")).result()
    stale = passwords[f"rotated-{tag}"]
    rotated = ctx.clients.acr.registries.begin_generate_credentials(
        rg, name, acr.GenerateCredentialsParameters(token_id=tokens.get(rg, name, f"rotated-{tag}").id,
                                                    name="password1")).result()
    passwords[f"rotated-{tag}"] = rotated.passwords[0].value
    connected = ctx.clients.acr.connected_registries
    cr = fetch_connected_registry(ctx)
    connected.begin_update(rg, name, cr.name, acr.ConnectedRegistryUpdateParameters(
        client_token_ids=[*cr.client_token_ids, tokens.get(rg, name, f"disabled-{tag}").id])).result()
    principals = {
        "reader": (f"reader-{tag}", passwords[f"reader-{tag}"], {"hello-world": {"content/read", "metadata/read"}}),
        "writer": (f"writer-{tag}", passwords[f"writer-{tag}"], {r: set(a) for r, a in writers.items()}),
        "rotated, new password": (f"rotated-{tag}", passwords[f"rotated-{tag}"], {r: set(a) for r, a in writers.items()}),
        "rotated, old password": (f"rotated-{tag}", stale, {}),
        "unattached": (f"unattached-{tag}", passwords[f"unattached-{tag}"], {r: set(a) for r, a in writers.items()}),
        "disabled": (f"disabled-{tag}", passwords[f"disabled-{tag}"], {}),
        "no token": (None, None, {}),
    }
    # The device's address and CA are what its operator knows; ARM names no route to a device.
    device = control.device_show(faulty_sandbox, ctx.site.device.id, hub=ctx.site.hub.name)
    device_endpoint, device_ca = device["address"], device["ca_cert"]
    # The device learns about attached tokens, the disabled one and the new password at its next sync.
    def synced():
        client = DXF(device_endpoint, "hello-world", tlsverify=device_ca,
                     auth=lambda d, r: d.authenticate(f"rotated-{tag}", passwords[f"rotated-{tag}"], response=r))
        return _attempt(client, "pull", "hello-world") and _attempt(DXF(device_endpoint, "team/app",
                        tlsverify=device_ca, auth=lambda d, r: d.authenticate(
                            f"writer-{tag}", passwords[f"writer-{tag}"], response=r)), "pull", "team/app")
    wait_for(synced, timeout=60, what="the device to sync the new token state and team/app")
    yield {"cloud": registry.login_server, "device": device_endpoint, "principals": principals,
           "ca": {"cloud": faulty_sandbox["ca_bundle"], "device": device_ca}}
    # crlib's teardown refuses to remove scope maps that tokens outside the parameters use.
    connected.begin_update(rg, name, cr.name, acr.ConnectedRegistryUpdateParameters(
        client_token_ids=cr.client_token_ids)).result()
    for extra in (f"unattached-{tag}", f"disabled-{tag}"):
        tokens.begin_delete(rg, name, extra).result()
    runbook.run(ctx, only=["teardown"])


def test_every_unauthorised_request_is_refused_and_every_granted_one_allowed(deployed, faulty_sandbox, figure):
    outcomes = {"granted and allowed": 0, "not granted and refused": 0}
    wrong = []
    for (who, (user, password, grants)), repository, action, where in itertools.product(
            deployed["principals"].items(), REPOSITORIES, ACTIONS, ("cloud", "device")):
        if where == "device" and action == "delete":
            continue  # the device endpoint serves pull and push; deletes happen in the cloud registry
        granted = ACTIONS[action] in grants.get(repository, set())
        if where == "device" and who == "unattached":
            granted = False
        client = DXF(deployed[where], repository, tlsverify=deployed["ca"][where],
                     auth=lambda d, r, u=user, p=password: d.authenticate(u, p, response=r))
        allowed = _attempt(client, action, repository)
        if allowed != granted:
            wrong.append(f"{who} {action} {repository} at the {where}: {'allowed' if allowed else 'refused'}")
        else:
            outcomes["granted and allowed" if granted else "not granted and refused"] += 1
    total = sum(outcomes.values()) + len(wrong)
    figure(f"{total} requests (7 principals x 2 repositories x 4 actions at the cloud, 3 at the device): "
           f"{outcomes['not granted and refused']} unauthorised refused, {outcomes['granted and allowed']} "
           f"granted allowed, {len(wrong)} wrong")
    assert wrong == []
    assert outcomes["not granted and refused"] > 40 and outcomes["granted and allowed"] > 15
