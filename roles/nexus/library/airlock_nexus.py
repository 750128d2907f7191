#!/usr/bin/python
"""Push a served airlock release's package mirrors into Sonatype Nexus Repository 3."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import uuid
from urllib.error import HTTPError
from urllib.parse import quote, urlencode

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

DOCUMENTATION = r"""
module: airlock_nexus
short_description: Push an airlock release's mirrors into Nexus Repository 3 (REST API)
description:
  - Makes (or brings to the wanted settings) one hosted repository per format - maven2,
    pypi, npm, apt - and uploads every file of the release's exported mirror that the
    repository does not hold yet, through the components API (C(POST
    /service/rest/v1/components)), one component per request.
  - What a repository holds is read once from C(GET /service/rest/v1/assets) (consistent,
    unlike search) and compared by SHA-256, so a second run uploads nothing and the
    repositories' ALLOW_ONCE write policy is never tripped.
  - Refuses a Nexus that is not writable (read-only, frozen) before changing anything.
  - In check mode it reads, and reports what it would make and upload.
options:
  url: {description: Nexus base URL (https), required: true, type: str}
  username:
    description: A user with repository-admin add/edit/read and repository-view add/read.
    required: true
    type: str
  password: {description: Its password, required: true, type: str, no_log: true}
  ca_path: {description: CA bundle to verify Nexus with, type: path}
  mirror:
    description: The release's exported mirror folder on this host.
    required: true
    type: path
  repositories:
    description: Repository name per format (maven, pypi, npm, apt); others are not pushed.
    required: true
    type: dict
  blob_store: {description: Blob store of new repositories, type: str, default: default}
  write_policy: {description: ALLOW_ONCE or ALLOW, type: str, default: ALLOW_ONCE}
  apt_distribution: {description: The apt repository's distribution, type: str, default: bookworm}
  apt_keypair:
    description: Armored private GPG key Nexus signs the apt repository with.
    type: str
    no_log: true
  apt_passphrase: {description: Its passphrase, type: str, no_log: true}
  timeout: {description: Seconds per request, type: int, default: 300}
  bundle:
    description: >-
      The release's bundle folder (OCI layout); with docker_registry, its images are pushed
      with skopeo (digests kept), each only when the registry lacks that digest.
    type: path
  docker_registry:
    description: HOST:PORT of a docker hosted repository's connector (or path route).
    type: str
"""


PATH_FORMAT = {"maven": "maven2", "pypi": "pypi", "npm": "npm", "apt": "apt"}
CHECKSUM = re.compile(r"\.(sha1|sha256|sha512|md5|asc)$")


class Nexus:
    def __init__(self, module):
        p = module.params
        self.module = module
        self.base = p["url"].rstrip("/")
        token = base64.b64encode(f"{p['username']}:{p['password']}".encode()).decode()
        self.auth = {"Authorization": "Basic " + token}
        self.ca_path = p["ca_path"]
        self.timeout = p["timeout"]

    def call(self, method, path, body=None, headers=None, ok=(200,)):
        """(status, parsed JSON or text); any status outside OK fails the module."""
        data, hdrs = body, {**self.auth, **(headers or {})}
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            r = open_url(self.base + path, method=method, data=data, headers=hdrs,
                         ca_path=self.ca_path, timeout=self.timeout, validate_certs=True,
                         follow_redirects="none")
            status, text = r.status, r.read().decode("utf-8", "replace")
        except HTTPError as e:
            status, text = e.code, e.read().decode("utf-8", "replace")
        except Exception as e:  # connection refused, TLS, timeout
            self.module.fail_json(msg=f"Nexus at {self.base}: {method} {path}: {e}")
        if status not in ok:
            self.module.fail_json(msg=f"Nexus answered {method} {path} with HTTP {status}: "
                                      f"{text[:500]}", status=status)
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text


def _repo_body(fmt, name, p):
    body = {"name": name, "online": True,
            "storage": {"blobStoreName": p["blob_store"], "strictContentTypeValidation": True,
                        "writePolicy": p["write_policy"]}}
    if fmt == "maven":
        body["maven"] = {"versionPolicy": "RELEASE", "layoutPolicy": "STRICT"}
    if fmt == "apt":
        body["apt"] = {"distribution": p["apt_distribution"]}
        body["aptSigning"] = {"keypair": p["apt_keypair"], "passphrase": p["apt_passphrase"]}
    return body


def _differs(want, have):
    """Whether the repository's settings in Nexus differ from WANT (the write policy
    compared without case: Nexus echoes it as sent; the apt signing key is never read back,
    so never compared: a PUT, when one is due, always sends it again)."""
    for key in ("online",):
        if have.get(key) != want[key]:
            return True
    ws, hs = want["storage"], have.get("storage") or {}
    if (str(hs.get("writePolicy", "")).upper() != ws["writePolicy"]
            or hs.get("strictContentTypeValidation") != ws["strictContentTypeValidation"]):
        return True
    for block in ("maven", "apt"):
        if block in want and any((have.get(block) or {}).get(k) != v
                                 for k, v in want[block].items()):
            return True
    return False


def ensure_repository(nx, fmt, name, p, report):
    want = _repo_body(fmt, name, p)
    status, have = nx.call("GET", f"/service/rest/v1/repositories/{fmt}/hosted/{quote(name)}",
                           ok=(200, 404))
    if status == 404:
        report["created"].append(name)
        if not nx.module.check_mode:
            nx.call("POST", f"/service/rest/v1/repositories/{fmt}/hosted", want, ok=(201,))
        return
    blob = ((have or {}).get("storage") or {}).get("blobStoreName")
    if blob and blob != p["blob_store"]:
        nx.module.fail_json(msg=f"Nexus repository {name} stores in blob store {blob}, not "
                                f"{p['blob_store']}: Nexus cannot move it in place. Set "
                                "blob_store to it, or use another repository name.")
    if _differs(want, have or {}):  # a PUT replaces every setting: the whole body, always
        report["updated"].append(name)
        if not nx.module.check_mode:
            nx.call("PUT", f"/service/rest/v1/repositories/{fmt}/hosted/{quote(name)}",
                    want, ok=(204,))


def held(nx, name):
    """SHA-256 of every asset the repository holds (GET /v1/assets, 100 a page)."""
    out, token = set(), None
    while True:
        query = {"repository": name, **({"continuationToken": token} if token else {})}
        _, page = nx.call("GET", "/service/rest/v1/assets?" + urlencode(query))
        for item in (page or {}).get("items", []):
            sha = (item.get("checksum") or {}).get("sha256")
            if sha:
                out.add(sha)
        token = (page or {}).get("continuationToken")
        if not token:
            return out


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def maven_components(root):
    """{(group, artifact, version): [(path, extension, classifier)]} of a Maven 2 tree
    (checksums and maven-metadata.xml left out: Nexus makes its own)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        rel = os.path.relpath(dirpath, root).split(os.sep)
        if len(rel) < 3:
            continue
        group, artifact, version = ".".join(rel[:-2]), rel[-2], rel[-1]
        stem = f"{artifact}-{version}"
        for f in sorted(files):
            if CHECKSUM.search(f) or f.startswith("maven-metadata") or not f.startswith(stem):
                continue
            rest = f[len(stem):]
            classifier = ""
            if rest.startswith("-"):
                classifier, _, rest = rest[1:].partition(".")
                rest = "." + rest
            if not rest.startswith(".") or len(rest) < 2:
                continue
            out.setdefault((group, artifact, version), []).append(
                (os.path.join(dirpath, f), rest[1:], classifier))
    return out


def single_files(root, suffixes):
    out = []
    for dirpath, _, files in os.walk(root):
        out += [os.path.join(dirpath, f) for f in sorted(files) if f.endswith(suffixes)]
    return sorted(out)


def multipart(fields, files):
    """multipart/form-data with the files' bytes as they are (no transfer encoding)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, path in files:
        with open(path, "rb") as f:
            data = f.read()
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{os.path.basename(path)}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        parts.append(head + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


def upload(nx, name, fields, files):
    ctype, body = multipart(fields, files)
    nx.call("POST", "/service/rest/v1/components?" + urlencode({"repository": name}), body,
            {"Content-Type": ctype}, ok=(204,))


def push(nx, fmt, name, mirror, report):
    have = held(nx, name) if name not in report["created"] else set()
    counts = report["formats"].setdefault(fmt, {"uploaded": 0, "held": 0})
    if fmt == "maven":
        for (g, a, v), assets in sorted(maven_components(os.path.join(mirror, "maven")).items()):
            missing = [x for x in assets if _sha256(x[0]) not in have]
            counts["held"] += len(assets) - len(missing)
            if not missing:
                continue
            counts["uploaded"] += len(missing)
            if nx.module.check_mode:
                continue
            fields = [("maven2.groupId", g), ("maven2.artifactId", a), ("maven2.version", v),
                      ("maven2.generate-pom", "false")]
            files = []
            for i, (path, ext, classifier) in enumerate(missing, 1):
                fields.append((f"maven2.asset{i}.extension", ext))
                if classifier:
                    fields.append((f"maven2.asset{i}.classifier", classifier))
                files.append((f"maven2.asset{i}", path))
            upload(nx, name, fields, files)
        return
    folder, suffixes = {"pypi": ("pypi/files", (".whl", ".tar.gz", ".zip")),
                        "npm": ("npm", (".tgz",)), "apt": ("apt/pool", (".deb",))}[fmt]
    for path in single_files(os.path.join(mirror, folder), suffixes):
        if _sha256(path) in have:
            counts["held"] += 1
            continue
        counts["uploaded"] += 1
        if not nx.module.check_mode:
            upload(nx, name, [], [(f"{PATH_FORMAT[fmt]}.asset", path)])


def bundle_images(bundle):
    """(OCI ref, repository, tag, manifest digest) of the bundle's images."""
    with open(os.path.join(bundle, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    out = []
    for m in index.get("manifests", []):
        ann = m.get("annotations") or {}
        if ann.get("dev.airlock.kind") != "image":
            continue
        tag = ann.get("org.opencontainers.image.version") or "sha256-" + m["digest"][7:19]
        out.append((ann["org.opencontainers.image.ref.name"], ann["dev.airlock.name"], tag,
                    m["digest"]))
    return out


def push_images(module, report):
    p = module.params
    creds = f"{p['username']}:{p['password']}"
    tls = ["--cert-dir", os.path.dirname(p["ca_path"])] if p["ca_path"] else []
    images = report["formats"].setdefault("docker", {"uploaded": 0, "held": 0})
    for ref, repository, tag, digest in bundle_images(p["bundle"]):
        dest = f"docker://{p['docker_registry']}/{repository}:{tag}"
        rc, raw, _ = module.run_command(["skopeo", "inspect", "--raw", "--creds", creds, *tls,
                                         dest], binary_data=True)
        held_digest = "sha256:" + hashlib.sha256(raw).hexdigest() if rc == 0 else None
        if held_digest == digest:
            images["held"] += 1
            continue
        images["uploaded"] += 1
        if module.check_mode:
            continue
        rc, out, err = module.run_command(
            ["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-creds", creds,
             *(["--dest-cert-dir", os.path.dirname(p["ca_path"])] if p["ca_path"] else []),
             f"oci:{p['bundle']}:{ref}", dest])
        if rc != 0:
            module.fail_json(msg=f"skopeo copy of {repository}:{tag} to {p['docker_registry']} "
                                 f"failed: {(err or out)[-500:]}", **report)


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "username": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "ca_path": {"type": "path"},
            "mirror": {"type": "path", "required": True},
            "repositories": {"type": "dict", "required": True},
            "blob_store": {"type": "str", "default": "default"},
            "write_policy": {"type": "str", "default": "ALLOW_ONCE",
                             "choices": ["ALLOW_ONCE", "ALLOW"]},
            "apt_distribution": {"type": "str", "default": "bookworm"},
            "apt_keypair": {"type": "str", "no_log": True},
            "apt_passphrase": {"type": "str", "no_log": True},
            "timeout": {"type": "int", "default": 300},
            "bundle": {"type": "path"},
            "docker_registry": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    repos = p["repositories"]
    unknown = sorted(set(repos) - set(PATH_FORMAT))
    if unknown:
        module.fail_json(msg=f"repositories: unknown format(s) {', '.join(unknown)}; "
                             f"expected {', '.join(PATH_FORMAT)}")
    if not p["url"].startswith("https://"):
        module.fail_json(msg=f"url must be https (credentials travel with every request): "
                             f"{p['url']}")
    if "apt" in repos and not (p["apt_keypair"] or "").startswith(
            "-----BEGIN PGP PRIVATE KEY BLOCK-----"):
        module.fail_json(msg="the apt repository needs apt_keypair: the armored private GPG "
                             "key Nexus signs it with (gpg --export-secret-key --armor)")
    for fmt in repos:
        sub = {"maven": "maven", "pypi": "pypi/files", "npm": "npm", "apt": "apt/pool"}[fmt]
        if not os.path.isdir(os.path.join(p["mirror"], sub)):
            module.fail_json(msg=f"{p['mirror']}/{sub}: the release carries no {fmt} mirror; "
                                 f"leave {fmt} out of repositories")
    if p["docker_registry"] and not (p["bundle"] and os.path.isfile(
            os.path.join(p["bundle"], "index.json"))):
        module.fail_json(msg="docker_registry needs bundle: the release's bundle folder")
    nx = Nexus(module)
    nx.call("GET", "/service/rest/v1/status/writable")  # 503: read-only or frozen
    report = {"created": [], "updated": [], "formats": {}}
    for fmt, name in sorted(repos.items()):
        ensure_repository(nx, fmt, name, p, report)
    for fmt, name in sorted(repos.items()):
        push(nx, fmt, name, p["mirror"], report)
    if p["docker_registry"]:
        push_images(module, report)
    changed = bool(report["created"] or report["updated"]
                   or any(c["uploaded"] for c in report["formats"].values()))
    module.exit_json(changed=changed, **report)


if __name__ == "__main__":
    main()
