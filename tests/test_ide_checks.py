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


def test_connections_are_counted_from_the_kernels_own_socket_table() -> None:
    """A real listening socket here, two clients connected to it: /proc/net/tcp as the
    kernel writes it counts them (and nothing on another port)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    from pathlib import Path

    def table() -> str:
        return Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()

    assert cs.code_server_connections(table(), port) == 0
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    accepted = [server.accept()[0] for _ in clients]
    try:
        assert cs.code_server_connections(table(), port) == 2
        assert cs.code_server_connections(table(), port + 1 if port < 65535 else 1) == 0
    finally:
        for s in clients + accepted + [server]:
            s.close()


def _running(name: str, image: str, running: bool = True) -> dict:
    return {"item": {"name": name}, "exists": True,
            "container": {"Config": {"Image": image}, "State": {"Running": running}}}


def _sockets(name: str, established: int, image: str = "old") -> dict:
    rows = "".join(f"   {i}: 0100007F:1F90 0100007F:C35{i} 01 0:0 00:0 0 1000 0 1 1\n"
                   for i in range(established))
    return {"item": _running(name, image), "rc": 0,
            "stdout": "  sl  local_address rem_address   st\n" + rows}


def test_a_connected_users_workbench_keeps_its_image_until_they_leave() -> None:
    running = [_running("alice", "reg/cs@sha256:old"), _running("bob", "reg/cs@sha256:old"),
               _running("carol", "reg/cs@sha256:new"),
               {"item": {"name": "dave"}, "exists": False}]
    # only the workbenches whose image changes are asked about their sockets
    changing = cs.code_server_changing(running, "reg/cs@sha256:new")
    assert [r["item"]["name"] for r in changing] == ["alice", "bob"]
    sockets = [_sockets("alice", 1, "reg/cs@sha256:old"), _sockets("bob", 0, "reg/cs@sha256:old")]
    plan = cs.code_server_image_plan(running, sockets, "reg/cs@sha256:new")
    assert plan == {"images": {"alice": "reg/cs@sha256:old", "bob": "reg/cs@sha256:new",
                               "carol": "reg/cs@sha256:new", "dave": "reg/cs@sha256:new"},
                    "deferred": ["alice"]}
    # told to, everyone moves now
    now = cs.code_server_image_plan(running, sockets, "reg/cs@sha256:new", True)
    assert now["deferred"] == [] and set(now["images"].values()) == {"reg/cs@sha256:new"}
    # a workbench that could not be asked (stopped meanwhile) is not connected
    gone = cs.code_server_image_plan(running, [{**sockets[0], "rc": 1, "stdout": ""}],
                                     "reg/cs@sha256:new")
    assert gone["deferred"] == []
