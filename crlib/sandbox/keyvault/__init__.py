"""Azure Key Vault's secrets data plane: one vault, on a port of its own (`key_vault_url`)."""
