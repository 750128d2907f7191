"""A stand-in for Sonatype Nexus Repository 3's REST API, as far as its published contract
(the swagger.json a Nexus 3.6x-3.9x serves at /service/rest/swagger.json) and the server
rules its source shows go (nexus-public: AbstractRepositoriesApiResource, ComponentsResource,
UploadManagerImpl, the write policies). No Nexus can run here: this proves airlock's
nexus role speaks that contract, not that a given Nexus accepts every upload.

Endpoints: status/writable; hosted repositories by format (GET 200/404, POST 201 and 400 on
a duplicate or a missing required field, PUT 204 replacing the whole configuration, 404 when
absent, 400 on a blob store change); /v1/assets (100 a page, continuationToken, paths with
a leading '/', checksum sha1/sha256); /v1/components upload (multipart, 204; 400 for a
field unknown to the format, a missing one, identical coordinates, or an asset already
there under ALLOW_ONCE: "cannot be updated"). Basic auth on every call."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import re
import tarfile
import threading
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs, urlparse

FORMATS = {"maven": "maven2", "pypi": "pypi", "npm": "npm", "apt": "apt"}
NAME = re.compile(r"^[a-zA-Z0-9\-][a-zA-Z0-9_\-.]*$")
PAGE = 100


class State:
    def __init__(self, user: str, password: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.repos: dict[str, dict[str, Any]] = {}  # name -> configuration as sent
        self.assets: dict[str, dict[str, bytes]] = {}  # repo -> path -> bytes
        self.blob_stores = {"default"}
        self.writable = True
        self.calls: list[tuple[str, str]] = []


def _validate(fmt: str, body: Any) -> list[str]:
    problems = []
    if not isinstance(body, dict):
        return ["body must be an object"]
    if not NAME.match(str(body.get("name", ""))):
        problems.append("name: must match ^[a-zA-Z0-9\\-][a-zA-Z0-9_\\-.]*$")
    if not isinstance(body.get("online"), bool):
        problems.append("online: may not be null")
    st = body.get("storage") or {}
    if not st.get("blobStoreName"):
        problems.append("storage.blobStoreName: may not be empty")
    if not isinstance(st.get("strictContentTypeValidation"), bool):
        problems.append("storage.strictContentTypeValidation: may not be null")
    if str(st.get("writePolicy", "")).upper() not in ("ALLOW", "ALLOW_ONCE", "DENY"):
        problems.append("storage.writePolicy: may not be null")
    if fmt == "maven":
        m = body.get("maven") or {}
        if m.get("versionPolicy") not in ("RELEASE", "SNAPSHOT", "MIXED"):
            problems.append("maven.versionPolicy: must match RELEASE|SNAPSHOT|MIXED")
        if m.get("layoutPolicy") not in ("STRICT", "PERMISSIVE"):
            problems.append("maven.layoutPolicy: must match STRICT|PERMISSIVE")
    if fmt == "apt":
        if not (body.get("apt") or {}).get("distribution"):
            problems.append("apt.distribution: may not be empty")
        if not (body.get("aptSigning") or {}).get("keypair"):
            problems.append("aptSigning.keypair: may not be empty")
    return problems


def _maven_path(fields: dict[str, str], ext: str, classifier: str) -> str:
    g, a, v = fields["groupId"], fields["artifactId"], fields["version"]
    name = f"{a}-{v}" + (f"-{classifier}" if classifier else "") + f".{ext}"
    return f"{g.replace('.', '/')}/{a}/{v}/{name}"


def _npm_path(data: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile("package/package.json")
        pkg = json.loads(member.read()) if member else {}
    name, version = pkg["name"], pkg["version"]
    return f"{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"


def _single_path(fmt: str, filename: str, data: bytes) -> str:
    if fmt == "npm":
        if not filename.endswith(".tgz"):
            raise ValueError("Unsupported extension. Extension must be .tgz")
        return _npm_path(data)
    if fmt == "pypi":
        m = re.match(r"^([A-Za-z0-9_.]+)-([^-]+)[-.]", filename)
        if not m:
            raise ValueError("Unable to extract PyPI metadata")
        norm = re.sub(r"[-_.]+", "-", m[1]).lower()
        return f"packages/{norm}/{m[2]}/{filename}"
    m = re.match(r"^([a-z0-9][a-z0-9+.-]+)_([^_]+)_([a-z0-9]+)\.deb$", filename)
    if not m:
        raise ValueError("Unable to parse the package's control file")
    return f"pool/{m[1][0]}/{m[1]}/{filename}"


class Handler(http.server.BaseHTTPRequestHandler):
    state: State

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else (body if isinstance(body, bytes)
                                         else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self, method: str) -> None:
        s = self.state
        url = urlparse(self.path)
        s.calls.append((method, url.path))
        body = self._body() if method in ("POST", "PUT") else b""
        if self.headers.get("Authorization") != s.auth:
            return self._send(401)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/service/rest/v1/status/writable":
            return self._send(200 if s.writable else 503)
        m = re.fullmatch(r"/service/rest/v1/repositories/(\w+)/hosted(?:/([^/]+))?", url.path)
        if m and m[1] in FORMATS:
            return self._repository(method, m[1], m[2], body)
        if url.path == "/service/rest/v1/assets" and method == "GET":
            return self._assets(query)
        if url.path == "/service/rest/v1/components" and method == "POST":
            return self._upload(query, body)
        return self._send(404)

    def _repository(self, method: str, fmt: str, name: str | None, raw: bytes) -> None:
        s = self.state
        if method == "GET" and name:
            conf = s.repos.get(name)
            if conf is None or conf["_format"] != fmt:
                return self._send(404, "Repository not found")
            out = {k: v for k, v in conf.items() if not k.startswith("_")}
            out.update(format=FORMATS[fmt], type="hosted", url=f"/repository/{name}")
            if fmt == "apt":  # the key is never read back; the passphrase neither
                out["aptSigning"] = None
            return self._send(200, out)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return self._send(400, "Unparseable JSON")
        problems = _validate(fmt, body)
        if problems:
            return self._send(400, [{"id": "PARAMETER", "message": p} for p in problems])
        if body["storage"]["blobStoreName"] not in s.blob_stores:
            return self._send(400, "Blob store does not exist")
        if method == "POST" and not name:
            if body["name"].lower() in {n.lower() for n in s.repos}:
                return self._send(400, f"\"Repository {body['name']} already exists\"")
            s.repos[body["name"]] = {**body, "_format": fmt}
            s.assets.setdefault(body["name"], {})
            return self._send(201)
        if method == "PUT" and name:
            if name not in s.repos:
                return self._send(404, "Repository not found")
            if body["name"] != name:
                return self._send(400, "Renaming a repository is not supported")
            old = s.repos[name]["storage"]["blobStoreName"]
            if body["storage"]["blobStoreName"] != old:
                return self._send(400, "Blob store cannot be changed")
            s.repos[name] = {**body, "_format": fmt}  # replaced whole
            return self._send(204)
        return self._send(405)

    def _assets(self, query: dict[str, str]) -> None:
        s = self.state
        name = query.get("repository")
        if not name:
            return self._send(422, "repository is required")
        if name not in s.repos:
            return self._send(404)
        items = sorted(s.assets[name].items())
        start = int(query.get("continuationToken") or 0)
        page = items[start:start + PAGE]
        token = str(start + PAGE) if start + PAGE < len(items) else None
        return self._send(200, {"items": [{
            "path": "/" + path, "repository": name, "format": s.repos[name]["_format"],
            "checksum": {"sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
                         "sha256": hashlib.sha256(data).hexdigest()}}
            for path, data in page], "continuationToken": token})

    def _upload(self, query: dict[str, str], raw: bytes) -> None:
        s = self.state
        name = query.get("repository")
        if not name:
            return self._send(422, "repository is required")
        if name not in s.repos:
            return self._send(404)
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            return self._send(400, "Expected multipart Content-Type")
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
        fields: dict[str, str] = {}
        files: dict[str, tuple[str, bytes]] = {}
        for part in msg.iter_parts():
            key = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            payload = part.get_payload(decode=True) or b""
            if part.get("Content-Transfer-Encoding"):
                return self._send(400, "transfer encodings are not read: the bytes are stored")
            if filename:
                files[key] = (filename, payload)
            else:
                fields[key] = payload.decode()
        fmt = s.repos[name]["_format"]
        prefix = FORMATS[fmt] + "."
        if any(not k.startswith(prefix) for k in [*fields, *files]):
            return self._send(400, [{"id": "x", "message": "Unknown component field"}])
        fields = {k[len(prefix):]: v for k, v in fields.items()}
        files = {k[len(prefix):]: v for k, v in files.items()}
        writes: dict[str, bytes] = {}
        try:
            if fmt == "maven":
                for req in ("groupId", "artifactId", "version"):
                    if req not in fields:
                        raise ValueError(f"Missing required component field '{req}'")
                for key, (_, data) in files.items():
                    ext = fields.get(f"{key}.extension")
                    if not ext:
                        raise ValueError(f"Missing required asset field 'Extension' on {key}")
                    path = _maven_path(fields, ext, fields.get(f"{key}.classifier", ""))
                    if path in writes:
                        raise ValueError("The assets 1 and 2 have identical coordinates")
                    writes[path] = data
            else:
                if set(files) != {"asset"} or fields:
                    raise ValueError("Unknown component field")
                filename, data = files["asset"]
                writes[_single_path(fmt, filename, data)] = data
        except (ValueError, KeyError, tarfile.TarError) as e:
            return self._send(400, [{"id": "x", "message": str(e)}])
        if not writes:
            return self._send(400, "No assets found in upload")
        policy = s.repos[name]["storage"]["writePolicy"].upper()
        for path in writes:
            if path in s.assets[name] and policy == "ALLOW_ONCE":
                return self._send(400, f"\"{name}/{path} cannot be updated\"")
        s.assets[name].update(writes)
        return self._send(204)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")


def serve(state: State, ssl_context: Any) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = type("NexusHandler", (Handler,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"https://127.0.0.1:{server.server_address[1]}"
