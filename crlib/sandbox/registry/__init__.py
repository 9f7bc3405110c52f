"""The OCI Distribution data plane of sandbox registries, with ACR's token auth.

Hand-written because no maintained Python library serves the Distribution API: clients (python-dxf,
skopeo) exist, servers (distribution/distribution, zot) are Go binaries this project cannot ship.
"""
