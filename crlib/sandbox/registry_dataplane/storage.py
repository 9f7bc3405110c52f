"""Content-addressed blob storage on disk, shared by every sandbox registry.

A blob lives once under blobs/<algorithm>/<2 hex>/<hex>, whoever pushed it; which repository may
see it is recorded in the store (models.py). Digests are sha256 or sha512, as distribution v3
accepts (OCI image-spec descriptor.md, "Registered algorithms"). Uploads stream to a temporary file
while hashing with sha256, so memory stays flat whatever the blob's size; an upload closed with a
sha512 digest is hashed once more from disk then. The digest is checked before the blob is moved
into place.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from ..core.errors import SandboxError

# Hex length of each supported algorithm's digest.
ALGORITHMS = {"sha256": 64, "sha512": 128}
CANONICAL = "sha256"
# OCI image-spec descriptor.md, "Digests": algorithm ":" encoded.
_DIGEST_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
CHUNK = 1024 * 1024


def _invalid(message: str) -> SandboxError:
    # Distribution spec: an invalid digest or an unsupported algorithm answers 400 (DIGEST_INVALID).
    return SandboxError(400, "DIGEST_INVALID", message)


def check_digest(digest: str) -> str:
    """The digest, if it is well formed and of a supported algorithm; else DIGEST_INVALID, saying why."""
    if not _DIGEST_GRAMMAR.match(digest or ""):
        raise _invalid(f"invalid digest {digest!r}: a digest is <algorithm>:<hex>, e.g. sha256:<64 hex characters>")
    algorithm, encoded = digest.split(":", 1)
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise _invalid(f"unsupported digest algorithm {algorithm!r} in {digest!r}: "
                       f"this registry supports {' and '.join(ALGORITHMS)}")
    if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise _invalid(f"invalid {algorithm} digest {digest!r}: expected {length} lowercase hex characters")
    return digest


def algorithm_of(digest: str) -> str:
    return check_digest(digest).split(":", 1)[0]


def digest_of(data: bytes, algorithm: str = CANONICAL) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _hash_file(path: Path, algorithm: str) -> hashlib._Hash:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher


class BlobStore:
    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs"
        self.uploads = root / "uploads"
        for algorithm in ALGORITHMS:
            (self.blobs / algorithm).mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)
        # Running sha256 of open uploads; an upload that outlives a restart is re-hashed from disk.
        self._hashers: dict[str, hashlib._Hash] = {}

    def path(self, digest: str) -> Path:
        algorithm, hexdigest = check_digest(digest).split(":", 1)
        return self.blobs / algorithm / hexdigest[:2] / hexdigest

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def put_bytes(self, data: bytes, algorithm: str = CANONICAL) -> str:
        """Store small content (manifests, seeded configs) and return its digest."""
        digest = digest_of(data, algorithm)
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return digest

    # -- uploads -------------------------------------------------------------------------------
    def start_upload(self) -> str:
        upload_id = str(uuid.uuid4())
        (self.uploads / upload_id).touch()
        self._hashers[upload_id] = hashlib.sha256()
        return upload_id

    def upload_size(self, upload_id: str) -> int:
        path = self.uploads / upload_id
        if not path.exists():
            raise SandboxError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        return path.stat().st_size

    def _hasher(self, upload_id: str) -> hashlib._Hash:
        hasher = self._hashers.get(upload_id)
        if hasher is None:
            hasher = self._hashers[upload_id] = _hash_file(self.uploads / upload_id, CANONICAL)
        return hasher

    def _upload_digest(self, upload_id: str, algorithm: str) -> str:
        """The upload's digest: the running sha256, or another algorithm read from disk once."""
        if algorithm == CANONICAL:
            return f"{CANONICAL}:{self._hasher(upload_id).hexdigest()}"
        return f"{algorithm}:{_hash_file(self.uploads / upload_id, algorithm).hexdigest()}"

    async def append(self, upload_id: str, stream) -> int:
        """Append a request body to an upload, hashing as it goes. Returns the new size."""
        self.upload_size(upload_id)
        hasher = self._hasher(upload_id)
        with open(self.uploads / upload_id, "ab") as fh:
            async for chunk in stream.iter_chunked(CHUNK):
                hasher.update(chunk)
                fh.write(chunk)
        return (self.uploads / upload_id).stat().st_size

    def finish_upload(self, upload_id: str, digest: str) -> int:
        """Verify the digest and move the upload into place. Returns the blob's size."""
        actual = self._upload_digest(upload_id, algorithm_of(digest))
        source = self.uploads / upload_id
        if actual != digest:
            self.cancel_upload(upload_id)
            raise SandboxError(400, "DIGEST_INVALID", f"provided digest did not match uploaded content: "
                                                      f"the upload's {digest.split(':', 1)[0]} digest is {actual}",
                               details={"expected": digest, "actual": actual})
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = source.stat().st_size
        if target.exists():
            source.unlink()
        else:
            os.replace(source, target)
        self._hashers.pop(upload_id, None)
        return size

    def cancel_upload(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)
        (self.uploads / upload_id).unlink(missing_ok=True)

    def write_chunks(self, chunks, digest: str) -> int:
        """Store a blob from an iterable of byte chunks (a client download), checking its digest.

        Safe from worker threads: each call writes its own temporary file.
        """
        hasher = hashlib.new(algorithm_of(digest))
        tmp = self.uploads / f"{uuid.uuid4()}.download"
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                hasher.update(chunk)
                fh.write(chunk)
        if f"{hasher.name}:{hasher.hexdigest()}" != digest:
            tmp.unlink()
            raise SandboxError(400, "DIGEST_INVALID", f"downloaded content does not match {digest}")
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = tmp.stat().st_size
        os.replace(tmp, target)
        return size
