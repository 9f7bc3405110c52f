"""The images the sandbox's image source serves, and how their bytes are made.

Each image is small but built like a real one: three gzip'd tar layers (a base layer all images
share, the program its entrypoint names, and a metadata layer naming the image and version), an
OCI image config whose rootfs.diff_ids are the uncompressed layers' digests, and an OCI image
manifest. Every byte derives from the table below with fixed timestamps and owners, so digests
are the same in every sandbox.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

MCR = "mcr.microsoft.com"
DOCKER_HUB = "docker.io"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# Every file and history entry carries this time, so rebuilding gives the same bytes.
CREATED = "2024-01-01T00:00:00Z"
_MTIME = 1704067200
_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class SourceImage:
    """One image, served by `registry` as `repository` under each of `tags`."""

    repository: str
    version: str
    tags: tuple[str, ...]
    entrypoint: str
    ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    registry: str = MCR

    @property
    def name(self) -> str:
        """What the content calls the image: Docker Hub's official images live under library/."""
        return self.repository.removeprefix("library/")


_CONNECTED_REGISTRY: dict[str, Any] = {"entrypoint": "/usr/local/bin/connected-registry", "ports": ("8080/tcp",),
                       "env": ("ACR_REGISTRY_CONNECTION_STRING",), "volumes": ("/var/acr/data",)}
_EDGE_HUB_PORTS = ("443/tcp", "5671/tcp", "8883/tcp")

# The quickstart's tags (docs.microsoft.com: connected registry on IoT Edge) and current ones.
IMAGES: tuple[SourceImage, ...] = (
    SourceImage("acr/connected-registry", "0.8.0", ("0.8.0",), **_CONNECTED_REGISTRY),
    SourceImage("acr/connected-registry", "0.11.1", ("0.11.1", "latest"), **_CONNECTED_REGISTRY),
    SourceImage("azureiotedge-agent", "1.2.4", ("1.2.4",), "/app/agentStart.sh"),
    SourceImage("azureiotedge-agent", "1.5.21", ("1.5.21", "1.5"), "/app/agentStart.sh"),
    SourceImage("azureiotedge-hub", "1.2.4", ("1.2.4",), "/app/hubStart.sh", _EDGE_HUB_PORTS),
    SourceImage("azureiotedge-hub", "1.5.21", ("1.5.21", "1.5"), "/app/hubStart.sh", _EDGE_HUB_PORTS),
    SourceImage("azureiotedge-api-proxy", "1.1.2", ("1.1.2",), "/app/run.sh", ("443/tcp",)),
    SourceImage("azureiotedge-api-proxy", "1.1.4", ("1.1.4", "1.1"), "/app/run.sh", ("443/tcp",)),
    SourceImage("azureiotedge-diagnostics", "1.2.4", ("1.2.4",), "/app/diagnostics"),
    SourceImage("azureiotedge-diagnostics", "1.5.21", ("1.5.21", "1.5"), "/app/diagnostics"),
    SourceImage("hello-world", "latest", ("latest",), "/hello"),
    SourceImage("library/hello-world", "latest", ("latest",), "/hello", registry=DOCKER_HUB),
)


@dataclass(frozen=True)
class BuiltImage:
    """An image's blobs by digest (config and layers), and its manifest's bytes."""

    blobs: dict[str, bytes]
    manifest: bytes

    @property
    def digest(self) -> str:
        return _digest(self.manifest)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar of {path: (content, mode)} with its parent directories; headers fixed for stable bytes."""
    directories = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in directories:
            tar.addfile(_header(path + "/", tarfile.DIRTYPE, 0o755, 0))
        for path, (content, mode) in sorted(files.items()):
            tar.addfile(_header(path, tarfile.REGTYPE, mode, len(content)), io.BytesIO(content))
    return buffer.getvalue()


def _header(path: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _layers(image: SourceImage) -> list[tuple[dict[str, tuple[bytes, int]], str]]:
    """Each layer's files, and the history line that made it."""
    base = {"etc/os-release": (b'NAME="crlib sandbox base"\nID=crlib-sandbox\nVERSION_ID=1\n', 0o644)}
    program = (f"#!/bin/sh\n# {image.name} {image.version}: a stand-in served by the crlib sandbox.\n"
               f"# Entrypoint: {image.entrypoint}\n"
               + "".join(f"# Listens on {port}\n" for port in image.ports)
               + "".join(f"# Reads ${name}\n" for name in image.env)
               + "".join(f"# Keeps its data in {volume}\n" for volume in image.volumes)
               + f'echo "{image.name} {image.version} (crlib sandbox stand-in)"\n').encode()
    metadata = json.dumps({"image": f"{image.name}:{image.version}", "name": image.name, "version": image.version,
                           "entrypoint": [image.entrypoint], "ports": list(image.ports)}, indent=2).encode()
    share = f"usr/share/{image.name}"
    return [
        (base, "ADD crlib-sandbox-base /"),
        ({image.entrypoint.lstrip("/"): (program, 0o755)}, f"COPY {image.entrypoint} {image.entrypoint}"),
        ({f"{share}/VERSION": (image.version.encode() + b"\n", 0o644), f"{share}/image.json": (metadata, 0o644)},
         f"COPY metadata /{share}/"),
    ]


@functools.cache
def build(image: SourceImage) -> BuiltImage:
    blobs: dict[str, bytes] = {}
    layers, diff_ids, history = [], [], []
    for files, created_by in _layers(image):
        tar = _tar(files)
        compressed = gzip.compress(tar, compresslevel=9, mtime=0)
        blobs[_digest(compressed)] = compressed
        layers.append({"mediaType": OCI_LAYER, "digest": _digest(compressed), "size": len(compressed)})
        diff_ids.append(_digest(tar))
        history.append({"created": CREATED, "created_by": created_by})
    run_config: dict = {
        "Entrypoint": [image.entrypoint], "Env": [_PATH, *(f"{name}=" for name in image.env)],
        "WorkingDir": "/" if image.entrypoint.count("/") == 1 else image.entrypoint.rsplit("/", 1)[0],
        "Labels": {"org.opencontainers.image.title": image.name, "org.opencontainers.image.version": image.version},
    }
    if image.ports:
        run_config["ExposedPorts"] = {port: {} for port in image.ports}
    if image.volumes:
        run_config["Volumes"] = {volume: {} for volume in image.volumes}
    config = _json({"created": CREATED, "architecture": "amd64", "os": "linux", "config": run_config,
                    "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history})
    blobs[_digest(config)] = config
    manifest = _json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": layers,
        "annotations": {"org.opencontainers.image.created": CREATED,
                        "org.opencontainers.image.version": image.version},
    })
    return BuiltImage(blobs, manifest)


def _json(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
