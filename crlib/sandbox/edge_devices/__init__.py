"""Simulated IoT Edge devices: the edge agent, the connected registry module and the API proxy.

A device is provisioned with its device connection string (the analogue of `iotedge config mp`
plus `iotedge config apply`). From then on it connects to its hub, reports `$edgeAgent` the way
the real agent does, applies deployments by pulling every module image over HTTPS with the
manifest's registryCredentials, and runs the modules the sandbox knows how to run: the connected
registry (activation, scheduled sync, local pushes sent upstream) and the API proxy (the device
endpoint, `<device>:8000` in Microsoft's docs, here 127.0.0.1:<port>).
"""
