"""Maven and Go content end to end with the real clients: a Java project's closure resolved
by Maven and a Go module graph fetched by the go command at build time; exported as a
Maven 2 repository and a GOPROXY tree with the site's checksum database; served by a real
nginx on loopback; and built by `mvn package` and `go build` that reach nothing else
(Maven: one mirror of every repository; go: GOPROXY without `direct`, GOSUMDB the site's
key). Tampered files are refused by the clients themselves.

Needs Maven Central and the Go module proxy at build time, as a staging host has."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import Nginx, free_port, need, write_spec
from installer.bundle import gosumdb, mirror
from installer.bundle.build import BuildOptions, build
from installer.bundle.sources.maven import DEPENDENCY_PLUGIN, settings_xml
from installer.bundle.verify import verify
from installer.errors import IntegrityError, SourceError, SpecError

PROJECTS = Path(__file__).resolve().parents[1] / "bundles" / "sample" / "projects"

SPEC = """
    apiVersion: airlock/v1
    name: source
    version: 1
    phase: poc
    maven:
      poms:
        - path: java-hello/pom.xml
          goals: [package]
    go:
      modules:
        - github.com/google/uuid@v1.6.0
      gomods:
        - go-hello/go.mod
"""


def _projects(into: Path) -> None:
    for name in ("java-hello", "go-hello"):
        shutil.copytree(PROJECTS / name, into / name)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("mvn")
    need("go")
    d = tmp_path_factory.mktemp("source-spec")
    _projects(d)
    b = build(write_spec(d, SPEC), d / "bundle", BuildOptions()).path
    assert verify(b).ok
    return b


@pytest.fixture(scope="module")
def sumdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("sumdb") / "go-sumdb"
    gosumdb.make_key(home)
    return home


@pytest.fixture
def served(bundle: Path, sumdb: Path, tmp_path: Path):
    port = free_port()
    out = tmp_path / "export"
    summary = mirror.export(bundle, out, base_url=f"http://127.0.0.1:{port}/", site_key=None,
                            go_sumdb=sumdb)
    server = Nginx(out, port, tmp_path / "nginx")
    yield out, server.url, summary
    server.stop()


def test_bundle_lists_maven_and_go_with_purls_and_hashes(bundle: Path) -> None:
    meta = json.loads((bundle / "bundle.json").read_text())
    kinds = {a["kind"]: a for a in meta["artifacts"]}
    assert set(kinds) == {"maven", "go"}
    maven = {f["path"]: f for f in kinds["maven"]["files"]}
    lang3 = maven["org/apache/commons/commons-lang3/3.17.0/commons-lang3-3.17.0.jar"]
    assert lang3["name"] == "org.apache.commons:commons-lang3" and len(lang3["sha1"]) == 40
    # the closure: plugins, their dependencies, and what surefire resolves while running
    assert any(p.startswith("org/apache/maven/surefire/surefire-junit-platform/")
               for p in maven)
    assert any(p.startswith("org/apache/maven/plugins/maven-compiler-plugin/3.14.1/")
               for p in maven)
    go = {f["path"]: f for f in kinds["go"]["files"]}
    zip_ = go["github.com/spf13/cobra/@v/v1.8.1.zip"]
    assert zip_["h1"] == "h1:e5/vxKd/rZsfSJMUX1agtjeTDf+qv1/JdBF8gg5k9ZM="  # go.sum's
    assert go["github.com/google/uuid/@v/v1.6.0.mod"]["h1"] == \
        "h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo="
    sbom = (bundle / "sbom.cdx.json").read_text()
    assert "pkg:maven/org.apache.commons/commons-lang3@3.17.0" in sbom
    assert "pkg:golang/github.com/spf13/cobra@v1.8.1" in sbom
    lock = json.loads((bundle.parent / "test.lock.json").read_text())
    assert "://" not in json.dumps(lock)  # coordinates and hashes, never a repository URL
    assert lock["entries"]["go/mirror"]["packages"]["github.com/spf13/cobra/@v/v1.8.1.zip"][
        "h1"] == zip_["h1"]


# --------------------------------------------------------------------------- maven

def _mvn(project: Path, url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    settings = tmp_path / "settings.xml"
    settings.write_text(settings_xml(f"{url}/maven/"))
    return subprocess.run(
        ["mvn", "-B", "-Dstyle.color=never", "-s", str(settings),
         f"-Dmaven.repo.local={tmp_path / 'm2'}", *args],
        cwd=project, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MAVEN_ARGS"})


def test_mvn_package_from_the_mirror(served, tmp_path: Path) -> None:
    out, url, summary = served
    assert summary["maven"]["plugins"] >= 4  # prefixes: mvn dependency:tree works inside
    project = tmp_path / "java-hello"
    shutil.copytree(PROJECTS / "java-hello", project)
    proc = _mvn(project, url, tmp_path, "-q", "package")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert (project / "target/java-hello-1.0.0.jar").is_file()
    assert "Tests run: 2, Failures: 0" in (project / "target/surefire-reports/"
                                           "bank.hello.GreetingTest.txt").read_text()
    # the resolver's own plugin came along (Maven 3.8's super POM pins `dependency:` to
    # 2.8, so it is named in full); the group's plugin prefixes are served
    tree = _mvn(project, url, tmp_path, f"{DEPENDENCY_PLUGIN}:tree")
    assert tree.returncode == 0, tree.stdout[-3000:]
    assert "org.apache.commons:commons-lang3:jar:3.17.0:compile" in tree.stdout
    meta = (out / "maven/org/apache/commons/commons-lang3/maven-metadata.xml").read_text()
    assert "<version>3.17.0</version>" in meta
    prefixes = (out / "maven/org/apache/maven/plugins/maven-metadata.xml").read_text()
    assert "<prefix>dependency</prefix>" in prefixes and "<prefix>surefire</prefix>" in prefixes


def test_mvn_cannot_resolve_what_the_bundle_lacks(served, tmp_path: Path) -> None:
    _, url, _ = served
    project = tmp_path / "java-hello"
    shutil.copytree(PROJECTS / "java-hello", project)
    pom = project / "pom.xml"
    pom.write_text(pom.read_text().replace(
        "<dependencies>", "<dependencies><dependency><groupId>com.google.guava</groupId>"
        "<artifactId>guava</artifactId><version>33.4.0-jre</version></dependency>", 1))
    proc = _mvn(project, url, tmp_path, "-q", "package")
    assert proc.returncode != 0
    assert "com.google.guava:guava:jar:33.4.0-jre" in proc.stdout
    assert "Could not" in proc.stdout and "airlock" in proc.stdout  # from the one mirror


def test_mvn_refuses_a_tampered_jar(served, tmp_path: Path) -> None:
    out, url, _ = served
    jar = out / "maven/org/apache/commons/commons-lang3/3.17.0/commons-lang3-3.17.0.jar"
    data = bytearray(jar.read_bytes())
    data[-100] ^= 0xFF
    jar.write_bytes(bytes(data))
    project = tmp_path / "java-hello"
    shutil.copytree(PROJECTS / "java-hello", project)
    proc = _mvn(project, url, tmp_path, "-q", "package")
    assert proc.returncode != 0
    assert "Checksum validation failed" in proc.stdout, proc.stdout[-3000:]
    assert not (tmp_path / "m2/org/apache/commons/commons-lang3/3.17.0/"
                "commons-lang3-3.17.0.jar").exists()


# --------------------------------------------------------------------------- go

def _go(cwd: Path, url: str, verifier: str, tmp_path: Path, *args: str,
        gopath: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    gopath = gopath or tmp_path / "gopath"
    env.update(GOPROXY=f"{url}/go/", GOSUMDB=verifier, GOPATH=str(gopath),
               GOMODCACHE=str(tmp_path / "gomodcache"), GOFLAGS="-modcacherw",
               GOTOOLCHAIN="local", GONOSUMDB="", GOPRIVATE="", GOCACHE=str(tmp_path / "gocache"),
               HOME=str(tmp_path))
    return subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_go_build_from_the_proxy_tree(served, sumdb: Path, tmp_path: Path) -> None:
    _, url, summary = served
    verifier = (sumdb / "verifier").read_text().strip()
    assert summary["go"]["sumdb"]["verifier"] == verifier
    project = tmp_path / "go-hello"
    shutil.copytree(PROJECTS / "go-hello", project)
    proc = _go(project, url, verifier, tmp_path, "build", "-o", "hello", ".")
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(project / "hello")], capture_output=True, text=True, check=True)
    assert run.stdout.startswith("hello ")
    # without a go.sum, the go command checks each module against the site's database
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "go.mod").write_text("module bank.example/fresh\n\ngo 1.21\n")
    got = _go(fresh, url, verifier, tmp_path / "other", "get", "github.com/google/uuid@v1.6.0")
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "other/gopath/pkg/sumdb" / gosumdb.NAME / "latest").is_file()
    assert "github.com/google/uuid v1.6.0 h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=" \
        in (fresh / "go.sum").read_text()


def _plant(zip_path: Path, member: str, extra: bytes) -> None:
    """Rewrite a module zip with bytes appended to one file: still a valid zip."""
    import zipfile

    with zipfile.ZipFile(zip_path) as z:
        files = [(i.filename, z.read(i)) for i in z.infolist()]
    assert member in dict(files)
    zip_path.unlink()  # the served file may be a link into the bundle: never write through
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data + extra if name == member else data)


def test_go_refuses_a_tampered_module_zip(served, sumdb: Path, tmp_path: Path) -> None:
    out, url, _ = served
    verifier = (sumdb / "verifier").read_text().strip()
    zip_ = out / "go/github.com/google/uuid/@v/v1.6.0.zip"
    _plant(zip_, "github.com/google/uuid@v1.6.0/uuid.go", b"\n// planted\n")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "go.mod").write_text("module bank.example/fresh\n\ngo 1.21\n")
    got = _go(fresh, url, verifier, tmp_path, "get", "github.com/google/uuid@v1.6.0")
    assert got.returncode != 0
    text = got.stderr  # a well-formed zip with other bytes: the database's hash refuses it
    assert "checksum mismatch" in text and f"{gosumdb.NAME}: h1:" in text, text
    assert "SECURITY ERROR" in text
    assert not (fresh / "go.sum").exists() or "uuid" not in (fresh / "go.sum").read_text()


def test_go_refuses_a_database_signed_by_another_key(served, tmp_path: Path) -> None:
    _, url, _ = served
    other = gosumdb.make_key(tmp_path / "other-key")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "go.mod").write_text("module bank.example/fresh\n\ngo 1.21\n")
    got = _go(fresh, url, other, tmp_path, "get", "github.com/google/uuid@v1.6.0")
    assert got.returncode != 0
    assert "verifiable signatures" in got.stderr or "invalid signature" in got.stderr, \
        got.stderr


def test_sumdb_is_append_only_and_a_client_follows_it(bundle: Path, tmp_path: Path) -> None:
    """A go command that saw the site's first tree accepts the next (it extends it), and a
    bundle whose hash for a recorded version differs is refused."""
    home = tmp_path / "db"
    verifier = gosumdb.make_key(home)
    small = [gosumdb.Record("example.com/a", "v1.0.0", None, "h1:" + "A" * 43 + "=")]
    log, added = gosumdb.append(home, small)
    assert added == 1 and len(log) == 1
    port = free_port()
    out = tmp_path / "export"
    mirror.export(bundle, out, base_url=f"http://127.0.0.1:{port}/", site_key=None,
                  go_sumdb=home)
    server = Nginx(out, port, tmp_path / "nginx")
    try:
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        (fresh / "go.mod").write_text("module bank.example/fresh\n\ngo 1.21\n")
        first = _go(fresh, server.url, verifier, tmp_path, "get",
                    "github.com/google/uuid@v1.6.0")
        assert first.returncode == 0, first.stderr
        seen = (tmp_path / "gopath/pkg/sumdb" / gosumdb.NAME / "latest").read_text()
        # the next bundle adds records: the same client, its cached tree, accepts the new one
        more = [gosumdb.Record("example.com/b", "v1.0.0", None, "h1:" + "B" * 43 + "=")]
        gosumdb.append(home, more)
        mirror.export(bundle, out, base_url=server.url + "/", site_key=None, go_sumdb=home,
                      force=True)
        again = _go(fresh, server.url, verifier, tmp_path, "get",
                    "github.com/spf13/pflag@v1.0.5")
        assert again.returncode == 0, again.stderr
        now = (tmp_path / "gopath/pkg/sumdb" / gosumdb.NAME / "latest").read_text()
        assert now != seen and int(now.splitlines()[1]) > int(seen.splitlines()[1])
    finally:
        server.stop()
    before = (home / "records").read_bytes()
    with pytest.raises(IntegrityError, match=r"example\.com/a@v1\.0\.0"):
        gosumdb.append(home, [gosumdb.Record("example.com/a", "v1.0.0", None,
                                             "h1:" + "C" * 43 + "=")])
    assert (home / "records").read_bytes() == before


# --------------------------------------------------------------------------- rebuild, errors

def test_locked_rebuild_is_byte_identical(bundle: Path, tmp_path: Path) -> None:
    spec_dir = bundle.parent
    again = build(spec_dir / "test.yaml", tmp_path / "again", BuildOptions(locked=True))
    assert (again.path / "SHA256SUMS").read_bytes() == (bundle / "SHA256SUMS").read_bytes()


def _bad(tmp_path: Path, body: str) -> Path:
    _projects(tmp_path)
    return write_spec(tmp_path, "apiVersion: airlock/v1\nname: bad\nversion: 1\nphase: poc\n"
                      + textwrap.dedent(body).lstrip())


def _refused(tmp_path: Path, spec: Path) -> str:
    """The build's error; nothing was written (no bundle, no lock)."""
    with pytest.raises(SourceError) as e:
        build(spec, tmp_path / "b", BuildOptions())
    assert not (tmp_path / "b").exists() and not (tmp_path / "test.lock.json").exists()
    return str(e.value)


def test_a_coordinate_that_does_not_exist_names_its_spec_line(tmp_path: Path) -> None:
    spec = _bad(tmp_path, """
        maven:
          artifacts:
            - org.apache.commons:commons-lang3:3.17.0
            - org.example.airlock:no-such-artifact:1.0
    """)
    said = _refused(tmp_path, spec)
    assert f"{spec}:8:" in said and "no-such-artifact:jar:1.0" in said


def test_a_pom_that_does_not_parse_names_it(tmp_path: Path) -> None:
    spec = _bad(tmp_path, """
        maven:
          poms: [java-hello/pom.xml]
    """)
    pom = tmp_path / "java-hello/pom.xml"
    pom.write_text(pom.read_text().replace("</dependencies>", "", 1))
    said = _refused(tmp_path, spec)
    assert f"{spec}:6:" in said and "Non-parseable POM" in said


def test_a_go_sum_line_that_disagrees_names_it(tmp_path: Path) -> None:
    spec = _bad(tmp_path, """
        go:
          gomods: [go-hello/go.mod]
    """)
    gosum = tmp_path / "go-hello/go.sum"
    lines = gosum.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith("github.com/spf13/pflag v1.0.5 "))
    lines[n] = "github.com/spf13/pflag v1.0.5 h1:" + "A" * 43 + "="
    gosum.write_text("\n".join(lines) + "\n")
    said = _refused(tmp_path, spec)
    assert f"{gosum}:{n + 1}:" in said and "checksum mismatch" in said


def test_malformed_coordinates_and_modules_are_spec_errors(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
        apiVersion: airlock/v1
        name: bad
        version: 1
        phase: poc
        go:
          modules: [github.com/google/uuid@latest]
    """)
    with pytest.raises(SpecError) as e:
        build(spec, tmp_path / "b", BuildOptions())
    assert f"{spec}:6:" in str(e.value) and "path@version" in str(e.value)
