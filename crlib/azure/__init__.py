"""One Azure helper layer for every step: readers, the error mapper, and the table of names.

- `crlib.azure.errors`: `map_exceptions`, which turns azure-core, msrest and requests errors into
  crlib's exceptions (httpx's pattern), and `is_not_found`.
- `crlib.azure.readers`: one reader per resource kind, returning None when it is missing, and the
  per-process read cache (`RunContext.cache`) for resources that do not move under a run.
- `crlib.azure.names`: secret names, token and scope-map naming, password slots, action sets.
- `crlib.azure.family`: a connected registry's sync scope map and its ancestors.
- `crlib.azure.inputs`: what a registry-side step needs from earlier steps, with the error that
  blocks an apply while it is missing (a plan's `blocked_by`).
- `crlib.azure.tokens`: scope maps, tokens and token passwords, planned alike by every step.
- `crlib.azure.sync_credentials`: the sync password and connection string (settings and rotate).
- `crlib.azure.pull_access`: the module pull credential (manifest and rotate).
- `crlib.azure.images`: the images to import, at their source and in the cloud registry.
- `crlib.azure.devices`: the edge device as IoT Hub knows it (device, provision, the host script).
- `crlib.azure.removal`: deletes as plan changes (teardown and a host's removal).

Steps import from here, never from each other.
"""
