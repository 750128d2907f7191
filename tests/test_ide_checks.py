"""The code_server role's checks as functions (the lab proves them end to end in
test_ide.py): each bad input named, good input passes."""

from __future__ import annotations

import importlib.util

from conftest import REPO

spec = importlib.util.spec_from_file_location(
    "code_server_filters", REPO / "roles/code_server/filter_plugins/code_server.py")
cs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cs)

IDE = ["ide1", "ide2"]


def problems(users):
    return cs.code_server_user_problems(users, 8100, 8199, IDE)


def test_good_users_pass() -> None:
    assert problems([{"name": "alice", "port": 8101},
                     {"name": "bob", "port": 8101, "host": "ide2"},
                     {"name": "carol_x-1", "port": 8199, "route": "c"}]) == []


def test_each_bad_user_is_named() -> None:
    for users, words in [
        ([{"name": "../etc", "port": 8101}], "not a safe identifier"),
        ([{"name": "Alice", "port": 8101}], "not a safe identifier"),
        ([{"name": "a" * 40, "port": 8101}], "not a safe identifier"),
        ([{"name": "alice", "port": 8101}, {"name": "alice", "port": 8102}], "listed twice"),
        ([{"name": "alice", "port": 8101}, {"name": "bob", "port": 8102, "route": "alice"}],
         "both mapped to the route /u/alice/"),
        ([{"name": "alice", "port": 8101}, {"name": "bob", "port": 8101}],
         "both mapped to port 8101 on ide1"),
        ([{"name": "alice", "port": 80}], "outside 8100-8199"),
        ([{"name": "alice"}], "needs a port"),
        ([{"name": "alice", "port": 8101, "host": "gw1"}], "not in the ide group"),
        ([{"name": "alice", "port": 8101, "route": "a/b"}], "not a safe path segment"),
        ("alice", "must be a list"),
    ]:
        found = problems(users)
        assert len(found) == 1 and words in found[0], (users, found)


INDEX = {"manifests": [
    {"digest": "sha256:" + "a" * 64, "annotations": {"dev.airlock.kind": "image",
                                                    "dev.airlock.name": "code-server"}},
    {"digest": "sha256:" + "b" * 64, "annotations": {
        "dev.airlock.kind": "vsix", "dev.airlock.name": "airlock-sample.hello",
        "org.opencontainers.image.version": "0.1.0"}},
]}


def test_release_content_and_extension_checks() -> None:
    rel = cs.code_server_release(INDEX, "code-server")
    assert rel["image"]["digest"] == "sha256:" + "a" * 64
    assert cs.code_server_release(INDEX, "other")["image"] is None
    carried = cs.code_server_vsix_files(rel, {"sha256:" + "b" * 64: {"layers": [{
        "digest": "sha256:" + "c" * 64,
        "annotations": {"org.opencontainers.image.title": "airlock-sample.hello-0.1.0.vsix"}}]}})
    assert carried == {"airlock-sample.hello": {"file": "airlock-sample.hello-0.1.0.vsix",
                                                "sha256": "c" * 64, "version": "0.1.0"}}
    ok = ["airlock-sample.hello"]
    assert cs.code_server_extension_problems(ok, ok, carried) == []
    assert "not on the whitelist" in cs.code_server_extension_problems(
        ["other.ext"], ok, carried)[0]
    found = cs.code_server_extension_problems([], ["continue.continue"], carried)
    assert "carries no VSIX" in found[0] and "airlock-sample.hello" in found[0]
    assert cs.code_server_extension_dir("Airlock-Sample.Hello", carried, "/x") == \
        "/x/airlock-sample.hello-0.1.0"
