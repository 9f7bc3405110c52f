"""The image source: a read-only stand-in for mcr.microsoft.com and Docker Hub, seeded with small
images built like real ones (images.IMAGES), served on a port of its own by the OCI data plane
(..registry_dataplane) and copied from by importImage (..arm_containerregistry.imports)."""
