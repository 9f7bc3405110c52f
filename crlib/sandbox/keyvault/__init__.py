"""Azure Key Vault's secrets and keys data plane: one vault, on a port of its own (`key_vault_url`)."""
