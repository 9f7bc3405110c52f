"""Content-addressed blob storage on disk, shared by every sandbox registry.

A blob lives once under blobs/sha256/<2 hex>/<64 hex>, whoever pushed it; which repository may
see it is recorded in the store (models.py). Uploads stream to a temporary file while hashing,
so memory stays flat whatever the blob's size, and the digest is checked before the blob is
moved into place.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from ..core.errors import SandboxError

DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
CHUNK = 1024 * 1024


def check_digest(digest: str) -> str:
    if not DIGEST.match(digest or ""):
        raise SandboxError(400, "DIGEST_INVALID", f"provided digest did not match uploaded content: {digest!r}")
    return digest


class BlobStore:
    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.uploads = root / "uploads"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)
        # Running hashes of open uploads; an upload that outlives a restart is re-hashed from disk.
        self._hashers: dict[str, hashlib._Hash] = {}

    def path(self, digest: str) -> Path:
        hexdigest = check_digest(digest).split(":", 1)[1]
        return self.blobs / hexdigest[:2] / hexdigest

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def put_bytes(self, data: bytes) -> str:
        """Store small content (manifests, seeded configs) and return its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
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
            hasher = hashlib.sha256()
            with open(self.uploads / upload_id, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    hasher.update(chunk)
            self._hashers[upload_id] = hasher
        return hasher

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
        check_digest(digest)
        actual = "sha256:" + self._hasher(upload_id).hexdigest()
        source = self.uploads / upload_id
        if actual != digest:
            self.cancel_upload(upload_id)
            raise SandboxError(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
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
        check_digest(digest)
        hasher = hashlib.sha256()
        tmp = self.uploads / f"{uuid.uuid4()}.download"
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                hasher.update(chunk)
                fh.write(chunk)
        if "sha256:" + hasher.hexdigest() != digest:
            tmp.unlink()
            raise SandboxError(400, "DIGEST_INVALID", f"downloaded content does not match {digest}")
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = tmp.stat().st_size
        os.replace(tmp, target)
        return size
