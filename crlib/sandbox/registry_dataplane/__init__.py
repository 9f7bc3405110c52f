"""The OCI Distribution data plane of sandbox registries, with ACR's token auth. One router serves
every registry host: cloud registries' login servers and data endpoints, the image source
(..image_source) and the device endpoints of simulated devices (..edge_devices).

Hand-written because no maintained Python library serves the Distribution API: clients (python-dxf,
skopeo) exist, servers (distribution/distribution, zot) are Go binaries this project cannot ship.
"""
