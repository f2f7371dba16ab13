#!/usr/bin/env python3
"""Packs directory trees into one container image archive, without a daemon or a registry.

    oci.py --out IMAGE.tar --tag higgs-serve:TAG --config config.json [--layer-cache CACHEDIR] \
           --layer DIR EPOCH "created_by text" KEY [--layer ...]

Each --layer DIR becomes one gzip layer (in order, later layers win): every entry of DIR, sorted
by name, with its owner, group and mode as they are on disk, every mtime set to EPOCH, no user or
group names, no xattrs; hard links stay hard links; device nodes, sockets and fifos are left out
(the runtime provides /dev). gzip without a file name or timestamp. So the same trees and epochs
give byte-identical layers, and the same digests.

KEY ("-" for none) names the layer in --layer-cache: a layer whose KEY is there is taken from the
cache instead of being packed and compressed again (the caller's KEY must change whenever DIR's
content or EPOCH does). After a build the cache holds exactly this build's keyed layers.

--config is the image config's "config" object (Env, Entrypoint, Cmd, WorkingDir, ExposedPorts,
Labels, User); "created" is the last layer's EPOCH.

The archive holds both views of the same blobs:
  - an OCI image layout (oci-layout, index.json, blobs/sha256/...): `podman load`, `skopeo copy
    oci-archive:...`, `docker load` (Docker >= 25);
  - a Docker save manifest (manifest.json pointing at the same blobs): `docker load` of any version.
Prints a JSON summary (digests, compressed and unpacked sizes per layer) on stdout.
"""
import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import tempfile


class HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it into `sink`."""

    def __init__(self, sink):
        self.sink = sink
        self.h = hashlib.sha256()
        self.n = 0

    def writable(self):
        return True

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        if self.sink is not None:
            self.sink.write(b)
        return len(b)


def walk_sorted(root, rel=""):
    """Yields (relative path, absolute path) for every entry under root: depth first, by name."""
    absdir = os.path.join(root, rel) if rel else root
    for name in sorted(os.listdir(absdir)):
        r = f"{rel}/{name}" if rel else name
        a = os.path.join(root, r)
        yield r, a
        if stat.S_ISDIR(os.lstat(a).st_mode):
            yield from walk_sorted(root, r)


def write_layer(src, epoch, blobs_tmp):
    """Writes DIR as a gzip tar into a temporary file; returns (path, digest, size, diff_id, raw)."""
    fd, path = tempfile.mkstemp(dir=blobs_tmp, suffix=".layer")
    with os.fdopen(fd, "wb") as f:
        compressed = HashingWriter(f)
        buffered_c = io.BufferedWriter(compressed, 1 << 20)
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=buffered_c, mtime=0, compresslevel=6)
        raw = HashingWriter(gz)
        buffered_r = io.BufferedWriter(raw, 1 << 20)
        seen = {}
        with tarfile.open(fileobj=buffered_r, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for rel, a in walk_sorted(src):
                st = os.lstat(a)
                mode = st.st_mode
                ti = tarfile.TarInfo(rel)
                ti.uid, ti.gid = st.st_uid, st.st_gid
                ti.uname = ti.gname = ""
                ti.mtime = epoch
                ti.mode = stat.S_IMODE(mode)
                if stat.S_ISDIR(mode):
                    ti.type = tarfile.DIRTYPE
                    tar.addfile(ti)
                elif stat.S_ISLNK(mode):
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = os.readlink(a)
                    tar.addfile(ti)
                elif stat.S_ISREG(mode):
                    key = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1 and key in seen:
                        ti.type = tarfile.LNKTYPE
                        ti.linkname = seen[key]
                        tar.addfile(ti)
                        continue
                    seen[key] = rel
                    ti.size = st.st_size
                    with open(a, "rb") as fh:
                        tar.addfile(ti, fh)
                # device nodes, fifos, sockets: left out on purpose
        buffered_r.flush()
        gz.close()
        buffered_c.flush()
    return path, "sha256:" + compressed.h.hexdigest(), compressed.n, "sha256:" + raw.h.hexdigest(), raw.n


def add_bytes(tar, name, data, epoch):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = epoch
    ti.mode = 0o644
    ti.uname = ti.gname = ""
    tar.addfile(ti, io.BytesIO(data))


def add_dir(tar, name, epoch):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mtime = epoch
    ti.mode = 0o755
    ti.uname = ti.gname = ""
    tar.addfile(ti)


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--tag", required=True, help="NAME:TAG, e.g. higgs-serve:0.1.0")
    p.add_argument("--config", required=True)
    p.add_argument("--layer", nargs=4, action="append", metavar=("DIR", "EPOCH", "CREATED_BY", "KEY"), required=True)
    p.add_argument("--layer-cache", help="folder of packed layers, by KEY")
    a = p.parse_args()
    cache = a.layer_cache
    if cache:
        os.makedirs(cache, exist_ok=True)

    with open(a.config) as f:
        image_config = json.load(f)
    out_dir = os.path.dirname(os.path.abspath(a.out))
    tmp = tempfile.mkdtemp(dir=out_dir, prefix=".oci-")
    layers, history = [], []
    try:
        used = set()
        for src, epoch, created_by, key in a.layer:
            epoch = int(epoch)
            cached = key != "-" and cache and os.path.exists(os.path.join(cache, key + ".json"))
            if cached:
                with open(os.path.join(cache, key + ".json")) as f:
                    meta = json.load(f)
                path, digest, size, diff_id, raw = (os.path.join(cache, key + ".tar.gz"), meta["digest"],
                                                    meta["size"], meta["diff_id"], meta["unpacked"])
                if os.path.getsize(path) != size:
                    sys.exit(f"layer cache {path}: size differs from its .json; delete {cache}")
            else:
                path, digest, size, diff_id, raw = write_layer(src, epoch, tmp)
                if key != "-" and cache:
                    os.replace(path, os.path.join(cache, key + ".tar.gz"))
                    path = os.path.join(cache, key + ".tar.gz")
                    with open(os.path.join(cache, key + ".json.partial"), "w") as f:
                        json.dump({"digest": digest, "size": size, "diff_id": diff_id, "unpacked": raw}, f)
                    os.replace(os.path.join(cache, key + ".json.partial"), os.path.join(cache, key + ".json"))
            if key != "-":
                used.add(key)
            layers.append({"path": path, "digest": digest, "size": size, "diff_id": diff_id, "unpacked": raw,
                           "cached": key != "-" and bool(cache)})
            history.append({"created": iso(epoch), "created_by": created_by})
            how = "from the layer cache" if cached else "packed"
            print(f"layer {len(layers)}: {src}: {size / 1e6:.1f} MB gzip, {raw / 1e6:.1f} MB tar ({digest[:19]}, {how})", file=sys.stderr)
        if cache:  # the cache keeps this build's layers only
            for n in os.listdir(cache):
                if n.split(".", 1)[0] not in used:
                    os.unlink(os.path.join(cache, n))
        created = int(a.layer[-1][1])
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": iso(created),
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]},
            "history": history,
        }
        config_bytes = canonical(config)
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": l["digest"], "size": l["size"]} for l in layers],
        }
        manifest_bytes = canonical(manifest)
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        name, _, tag = a.tag.rpartition(":")
        if not name:
            name, tag = tag, "latest"
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    # the tag for podman/skopeo (OCI) and for docker/containerd (full name)
                    "org.opencontainers.image.ref.name": tag,
                    "io.containerd.image.name": f"{name}:{tag}",
                },
            }],
        }
        blob = lambda d: "blobs/sha256/" + d.split(":", 1)[1]
        docker_manifest = [{"Config": blob(config_digest), "RepoTags": [f"{name}:{tag}"],
                            "Layers": [blob(l["digest"]) for l in layers]}]
        tmp_out = a.out + ".partial"
        with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
            add_bytes(tar, "oci-layout", canonical({"imageLayoutVersion": "1.0.0"}), created)
            add_bytes(tar, "index.json", canonical(index), created)
            add_bytes(tar, "manifest.json", canonical(docker_manifest), created)
            add_dir(tar, "blobs", created)
            add_dir(tar, "blobs/sha256", created)
            add_bytes(tar, blob(config_digest), config_bytes, created)
            add_bytes(tar, blob(manifest_digest), manifest_bytes, created)
            done = set()
            for l in layers:
                if l["digest"] in done:
                    continue
                done.add(l["digest"])
                ti = tarfile.TarInfo(blob(l["digest"]))
                ti.size = l["size"]
                ti.mtime = created
                ti.mode = 0o644
                ti.uname = ti.gname = ""
                with open(l["path"], "rb") as fh:
                    tar.addfile(ti, fh)
        os.replace(tmp_out, a.out)
    finally:
        for l in layers:
            if not l["cached"] and os.path.exists(l["path"]):
                os.unlink(l["path"])
        os.rmdir(tmp)
    summary = {
        "image": a.out,
        "tag": f"{name}:{tag}",
        "manifest_digest": manifest_digest,
        "config_digest": config_digest,
        "compressed_bytes": sum(l["size"] for l in layers) + len(config_bytes) + len(manifest_bytes),
        "unpacked_bytes": sum(l["unpacked"] for l in layers),
        "archive_bytes": os.path.getsize(a.out),
        "layers": [{"dir": src, "digest": l["digest"], "compressed_bytes": l["size"],
                    "unpacked_bytes": l["unpacked"]} for (src, _, _, _), l in zip(a.layer, layers)],
    }
    print(json.dumps(summary, indent=2))


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


if __name__ == "__main__":
    main()
