"""Entra ID for service principals: OpenID discovery and the client-credentials token endpoint."""
