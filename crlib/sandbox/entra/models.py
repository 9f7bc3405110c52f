"""Access tokens the sandbox issues and checks: ES256 JWTs signed with a key kept in the state dir."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

TOKEN_LIFETIME = 3600


class TokenIssuer:
    def __init__(self, state_dir: Path):
        path = state_dir / "jwt.key"
        if not path.exists():
            new_key = ec.generate_private_key(ec.SECP256R1())
            path.write_bytes(new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            path.chmod(0o600)
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not an EC private key")
        self._key = key
        self.kid = str(uuid.uuid5(uuid.NAMESPACE_URL, str(path)))

    def issue(self, *, issuer: str, tenant_id: str, client_id: str, audience: str,
              lifetime: int = TOKEN_LIFETIME) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "aud": audience, "iss": issuer, "iat": now, "nbf": now, "exp": now + lifetime,
            "tid": tenant_id, "appid": client_id, "oid": client_id, "sub": client_id,
            "idtyp": "app", "ver": "1.0",
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})
        return token, lifetime

    def sign(self, claims: dict) -> str:
        """Sign other token kinds the sandbox issues (registry access and refresh tokens)."""
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})

    def verify(self, token: str, *, audiences: list[str]) -> dict:
        return jwt.decode(token, self._key.public_key(), algorithms=["ES256"], audience=audiences,
                          options={"require": ["exp", "aud"]})

    def jwks(self) -> dict:
        jwk = ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [jwk | {"kid": self.kid, "use": "sig", "alg": "ES256"}]}


def audience_of(scope: str) -> str:
    """'https://management.azure.com/.default' -> 'https://management.azure.com/'.

    The Azure CLI asks for '<resource>/.default' where the resource already ends in '/'
    ('https://management.core.windows.net//.default'); Entra gives such tokens the resource
    itself as audience, with a single trailing slash.
    """
    first = scope.split()[0] if scope else ""
    if first.endswith("//.default"):
        return first[: -len("/.default")]
    return first[: -len(".default")] if first.endswith("/.default") else first
