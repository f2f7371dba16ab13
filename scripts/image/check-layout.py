#!/usr/bin/env python3
"""Checks that an image archive from scripts/build-image.sh has the Dockerfile's runtime layout.

    check-layout.py IMAGE.oci.tar Dockerfile

Compared with the Dockerfile's last stage: ENTRYPOINT, CMD, WORKDIR, EXPOSE, USER (none = root, or
the image's runtime user), every ENV it sets, the runtime user's uid/name/home (its useradd line vs
the image's /etc/passwd), and /app/voices: the tracked voices/ less the cached codes (as
.dockerignore), owned as the Dockerfile's `COPY --chown` says. Exit 1 with the differences.
"""
import gzip
import json
import re
import shlex
import subprocess
import sys
import tarfile


def dockerfile_runtime(path):
    text = open(path).read().replace("\\\n", " ")
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    last_from = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
    d = {"env": {}, "expose": set(), "user": None, "useradd": None, "voices_chown": None}
    for l in lines[last_from + 1:]:
        word, _, rest = l.partition(" ")
        word = word.upper()
        if word in ("ENTRYPOINT", "CMD"):
            d[word.lower()] = json.loads(rest)
        elif word == "WORKDIR":
            d["workdir"] = rest.strip()
        elif word == "EXPOSE":
            d["expose"] |= {p if "/" in p else p + "/tcp" for p in rest.split()}
        elif word == "USER":
            d["user"] = rest.strip()
        elif word == "ENV":
            for kv in shlex.split(rest):
                k, _, v = kv.partition("=")
                d["env"][k] = v
        elif word == "RUN" and "useradd" in rest:
            m = re.search(r"useradd\b(.*?)(?:&&|;|$)", rest)
            args = shlex.split(m.group(1))
            d["useradd"] = {"uid": args[args.index("--uid") + 1], "home": args[args.index("--home-dir") + 1],
                            "name": args[-1]}
        elif word == "COPY" and "/app/voices" in rest:
            m = re.search(r"--chown=(\S+)", rest)
            d["voices_chown"] = m.group(1) if m else "0:0"
    return d


def image(path):
    with tarfile.open(path) as t:
        index = json.load(t.extractfile("index.json"))
        blob = lambda d: t.extractfile("blobs/sha256/" + d.split(":", 1)[1])
        manifest = json.load(blob(index["manifests"][0]["digest"]))
        config = json.load(blob(manifest["config"]["digest"]))
        files = {}
        # the base layer (/etc/passwd) and the app layer (/app) hold what is compared; not the CUDA one
        for layer in [manifest["layers"][0], manifest["layers"][-1]]:
            with tarfile.open(fileobj=gzip.GzipFile(fileobj=blob(layer["digest"])), mode="r|") as lt:
                for m in lt:
                    files[m.name] = (m.uid, m.gid, lt.extractfile(m).read() if m.name == "etc/passwd" else None)
    return config["config"], files


def main():
    img, dockerfile = sys.argv[1:]
    d = dockerfile_runtime(dockerfile)
    c, files = image(img)
    errors = []

    def same(what, docker, ours):
        if docker != ours:
            errors.append(f"{what}: Dockerfile {docker!r}, image {ours!r}")

    same("ENTRYPOINT", d.get("entrypoint"), c.get("Entrypoint"))
    same("CMD", d.get("cmd"), c.get("Cmd"))
    same("WORKDIR", d.get("workdir"), c.get("WorkingDir"))
    same("EXPOSE", sorted(d["expose"]), sorted(c.get("ExposedPorts", {})))
    env = dict(e.split("=", 1) for e in c.get("Env", []))
    for k, v in d["env"].items():
        same(f"ENV {k}", v, env.get(k))
    ua = d["useradd"]
    if not ua:
        errors.append("the Dockerfile creates no runtime user (useradd)")
    else:
        passwd = files["etc/passwd"][2].decode()
        ent = [l.split(":") for l in passwd.splitlines() if l.split(":")[0] == ua["name"]]
        same(f"user {ua['name']} (uid, home)", (ua["uid"], ua["home"]), (ent[0][2], ent[0][5]) if ent else None)
        # USER: none = root; an image built with `build-image.sh --user higgs` names the runtime user
        d_user, i_user = d["user"] or "root", c.get("User") or "root"
        if i_user != d_user and i_user not in (f"{ua['uid']}:{ua['uid']}", ua["name"]):
            errors.append(f"USER: Dockerfile {d_user!r}, image {i_user!r}")
    want = subprocess.run(["git", "ls-files", "voices/"], capture_output=True, text=True, check=True).stdout.split()
    want = sorted("app/" + f for f in want if not f.endswith((".codes", ".codes.json")))
    have = sorted(n for n in files if n.startswith("app/voices/"))
    same("/app/voices files", want, have)
    chown = d["voices_chown"]
    owners = {f"{files[n][0]}:{files[n][1]}" for n in have + ["app/voices"]}
    same("/app/voices owner", {chown}, owners)
    if errors:
        print("the image's layout differs from the Dockerfile's:", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        sys.exit(1)
    print(f"layout = Dockerfile: entrypoint {c['Entrypoint']} cmd {c['Cmd']}, workdir {c['WorkingDir']}, "
          f"port {sorted(c['ExposedPorts'])}, {len(d['env'])} env values, user {ua['name']} ({ua['uid']}), "
          f"{len(have)} voice files owned {chown}")


if __name__ == "__main__":
    main()
