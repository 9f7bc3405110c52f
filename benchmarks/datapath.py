"""Data path: crlib's pull through the device endpoint against skopeo's, for a 256 MiB image.

A 256 MiB image (LAYERS uncompressed tar layers of random bytes, generated deterministically chunk
by chunk, never held in memory whole) is pushed to the cloud registry, in a repository the
connected registry syncs and the client token may read. The runbook runs up to the access step,
then we wait until the device endpoint serves the image. Then, alternating, RUNS times each:

  * crlib: crlib.steps.checks._pull with the python-dxf client crlib builds
    (ctx.clients.oci(endpoint, repository, username=token, password=...)), in a subprocess of its
    own, so that its peak RSS (its own VmHWM, read at its end) is the pull's alone;
  * skopeo: `skopeo copy --src-cert-dir DIR --src-creds token:password docker://ENDPOINT/repo:tag
    dir:/dev/shm/...` (skopeo verifies digests and writes the blobs; to tmpfs, so not to disk).

Throughput = image bytes / seconds. crlib: the time of the _pull call (sign-in at the token endpoint,
manifest, every blob, digests verified), as a check runs it inside a kernel that is already up;
the subprocess's whole wall time (interpreter start, imports, context) is shown beside it. skopeo:
the process's wall time, start to exit (its start-up is a few ms). Ratio = median crlib _pull MB/s
/ median skopeo MB/s. Peak RSS is the crlib subprocess's VmHWM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import _common as c

NAME = "datapath"
TARGET = ">= 0.8 (crlib/skopeo throughput); crlib peak RSS <= 150 MB"
MIB = 1024 * 1024
LAYERS, LAYER_MIB, CHUNK = 4, 64, 4 * MIB
RUNS = 3
REPOSITORY, TAG = "bench-data", "256m"


# -- the image --------------------------------------------------------------------------------------
def layer_chunks(n: int):
    """Layer n: a one-file tar of LAYER_MIB MiB of seeded random bytes, CHUNK at a time."""
    info = tarfile.TarInfo(f"bench-{n}.bin")
    info.size, info.mtime = LAYER_MIB * MIB, 0
    yield info.tobuf(tarfile.USTAR_FORMAT)
    rng = random.Random(n)
    for _ in range(LAYER_MIB * MIB // CHUNK):
        yield rng.randbytes(CHUNK)
    yield b"\0" * 1024  # end of archive (the data is a multiple of 512 bytes)


def digest_of(chunks) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    for chunk in chunks:
        sha.update(chunk)
        size += len(chunk)
    return "sha256:" + sha.hexdigest(), size


def push_image(client) -> int:
    """Push the image with python-dxf; return its size (config, layers and manifest)."""
    layers = []
    for n in range(LAYERS):
        digest, size = digest_of(layer_chunks(n))
        client.push_blob(data=layer_chunks(n), digest=digest)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.push_blob(data=iter([config]), digest=config_digest)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)}, "layers": layers})
    client.set_manifest(TAG, manifest)
    return sum(layer["size"] for layer in layers) + len(config) + len(manifest)


# -- the two pullers -------------------------------------------------------------------------------
def pull_worker(params_file: str, endpoint: str) -> None:
    """In a subprocess: crlib's check pull, as run_checks does it; prints one JSON line."""
    from crlib import params
    from crlib.context import open_context
    from crlib.steps import checks

    ctx = open_context(params.load_file(params_file))
    token, password = checks.client_token(ctx)
    rss_before = vm("VmRSS")
    with ctx.clients.oci(endpoint, REPOSITORY, username=token, password=password) as client:
        started = time.monotonic()
        pulled = checks._pull(client, TAG)
        seconds = time.monotonic() - started
    print(json.dumps({"bytes": pulled["bytes"], "pull_s": seconds, "rss_before_kb": rss_before,
                      "vmhwm_kb": vm("VmHWM")}))


def status_field(path: Path, field: str) -> str:
    line = next(x for x in path.read_text().splitlines() if x.startswith(field + ":"))
    return line.split()[1]


def vm(field: str) -> int:
    """This process's VmRSS or VmHWM (peak RSS), KiB."""
    return int(status_field(Path("/proc/self/status"), field))


def run_child(args: list[str]) -> tuple[float, int, str]:
    """Run a command; (wall seconds, its peak RSS in KiB, stdout).

    The peak is VmHWM from /proc/<pid>/status, sampled while it runs (the high-water mark only grows,
    so the last sample is the peak up to ~10 ms before exit). Not ru_maxrss: a forked child's counts
    the parent's RSS at fork time, which here is larger than either puller's."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(args, stdout=out, stderr=err)
        peak = 0
        while proc.poll() is None:
            with contextlib.suppress(OSError, StopIteration, ValueError):  # gone, or a zombie without Vm fields
                peak = max(peak, int(status_field(Path(f"/proc/{proc.pid}/status"), "VmHWM")))
            time.sleep(0.01)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        return seconds, peak, out.read().decode()


def ensure_skopeo() -> str:
    if not shutil.which("skopeo"):
        c.say("skopeo is missing: apt-get install -y skopeo ...")
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "skopeo"], check=True, env=env, stdout=subprocess.DEVNULL)
    version = subprocess.run(["skopeo", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return version


# -- the benchmark ----------------------------------------------------------------------------------
def main() -> None:
    from crlib import runbook
    from crlib.context import open_context
    from crlib.steps import checks

    skopeo = ensure_skopeo()
    with c.sandbox("instant") as (status, work):
        data = c.site_data(status, work / "secrets", repositories=["hello-world", REPOSITORY])
        params_file = c.write_params(data, work / "bench.yaml")
        ctx = open_context(c.load_site(data))
        c.say("runbook up to the access step ...")
        runbook.run(ctx, only=[s for s in runbook.STEP_NAMES if s != "checks"])
        token, password = checks.client_token(ctx)
        login_server, endpoint = ctx.state["registry"]["login_server"], ctx.state["deploy"]["login_server_host"]
        c.say(f"pushing {LAYERS} x {LAYER_MIB} MiB to {login_server}/{REPOSITORY}:{TAG} ...")
        started = time.monotonic()
        with ctx.clients.oci(login_server, REPOSITORY, username=token, password=password) as cloud:
            size = push_image(cloud)
        push_s = time.monotonic() - started
        c.say(f"pushed in {push_s:.1f} s; waiting for the device endpoint {endpoint} to serve it ...")
        started = time.monotonic()
        with ctx.clients.oci(endpoint, REPOSITORY, username=token, password=password) as device:
            checks._until("the benchmark image on the device", lambda: device.head_manifest_and_response(TAG),
                          300, lambda: [])
        synced_s = time.monotonic() - started
        certs = work / "certs"
        certs.mkdir()
        shutil.copyfile(status["ca_bundle"], certs / "ca.crt")
        dest_root = Path(tempfile.mkdtemp(prefix="crlib-bench-skopeo-", dir="/dev/shm" if Path("/dev/shm").is_dir()
                                          else None))
        crlib_runs, skopeo_runs = [], []
        try:
            for n in range(RUNS):
                c.say(f"round {n + 1}/{RUNS}: crlib ...")
                seconds, hwm, out = run_child([sys.executable, __file__, "--pull-worker", str(params_file), endpoint])
                crlib_runs.append(json.loads(out.strip().splitlines()[-1]) | {"wall_s": seconds,
                                                                              "sampled_hwm_kb": hwm})
                c.say(f"round {n + 1}/{RUNS}: skopeo ...")
                dest = dest_root / f"copy-{n}"
                seconds, hwm, _ = run_child(["skopeo", "copy", "--quiet", "--insecure-policy", "--src-cert-dir",
                                                str(certs), "--src-creds", f"{token}:{password}",
                                                f"docker://{endpoint}/{REPOSITORY}:{TAG}", f"dir:{dest}"])
                skopeo_runs.append({"wall_s": seconds, "peak_rss_kb": hwm,
                                    "bytes": sum(p.stat().st_size for p in dest.iterdir())})
                shutil.rmtree(dest)
        finally:
            shutil.rmtree(dest_root, ignore_errors=True)
    report(size, push_s, synced_s, skopeo, crlib_runs, skopeo_runs)


def report(size: int, push_s: float, synced_s: float, skopeo: str, crlib_runs: list, skopeo_runs: list) -> None:
    med = statistics.median
    mb = size / 1e6

    def rate(seconds: float) -> float:
        return mb / seconds

    print(f"datapath: {size / MIB:.1f} MiB image ({LAYERS} layers) through the device endpoint, {RUNS} runs each,"
          " alternating\n")
    rows = []
    for n, (a, b) in enumerate(zip(crlib_runs, skopeo_runs, strict=True)):
        rows.append([n + 1, a["pull_s"], rate(a["pull_s"]), a["wall_s"], rate(a["wall_s"]), a["vmhwm_kb"] / 1024,
                     b["wall_s"], rate(b["wall_s"]), b["peak_rss_kb"] / 1024])
    print(c.table(["run", "crlib _pull s", "MB/s", "subprocess s", "MB/s", "peak RSS MB", "skopeo s", "MB/s",
                   "peak RSS MB"], rows))
    crlib_rate = med(rate(a["wall_s"]) for a in crlib_runs)
    pull_rate = med(rate(a["pull_s"]) for a in crlib_runs)
    skopeo_rate = med(rate(b["wall_s"]) for b in skopeo_runs)
    peak = max(a["vmhwm_kb"] for a in crlib_runs) / 1024
    before = med(a["rss_before_kb"] for a in crlib_runs) / 1024
    print(f"\ncrlib _pull {pull_rate:.1f} MB/s (whole subprocess {crlib_rate:.1f} MB/s); "
          f"skopeo {skopeo_rate:.1f} MB/s ({skopeo}); MB = 10^6 bytes, RSS MB = MiB")
    print(f"crlib peak RSS {peak:.1f} MB (RSS before the pull {before:.1f} MB: the pull adds {peak - before:.1f} MB)")
    print(f"push to the cloud registry {rate(push_s):.1f} MB/s ({push_s:.1f} s); on the device after {synced_s:.1f} s")
    ok = [n for n in crlib_runs if n["bytes"] == size] and all(b["bytes"] >= size - 4096 for b in skopeo_runs)
    print(f"bytes pulled: crlib {crlib_runs[0]['bytes']}, skopeo (files) {skopeo_runs[0]['bytes']}, image {size}"
          + ("" if ok else "  <- MISMATCH"))
    c.finish(NAME, pull_rate / skopeo_rate, f"{TARGET}; peak RSS {peak:.1f} MB", {
        "image_bytes": size, "crlib_pull_mb_s": round(pull_rate, 1), "crlib_subprocess_mb_s": round(crlib_rate, 1),
        "ratio_subprocess": round(crlib_rate / skopeo_rate, 3),
        "skopeo_mb_s": round(skopeo_rate, 1), "crlib_peak_rss_mb": round(peak, 1),
        "crlib_rss_before_pull_mb": round(before, 1), "skopeo": skopeo, "push_s": round(push_s, 2),
        "sync_wait_s": round(synced_s, 2), "crlib_runs": crlib_runs, "skopeo_runs": skopeo_runs})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pull-worker"]:
        pull_worker(*sys.argv[2:4])
    else:
        main()
