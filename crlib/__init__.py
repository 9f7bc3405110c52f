"""crlib: a runbook library for ACR connected registries on IoT Edge."""

__version__ = "0.1.0"
