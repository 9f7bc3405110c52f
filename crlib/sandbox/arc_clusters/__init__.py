"""The cluster side of Arc-enabled Kubernetes: what runs on a connected cluster once an extension is
installed there. Today: the connected registry extension (Microsoft.ContainerRegistry.ConnectedRegistry)."""
