"""The key ceremony: signers whose private keys never meet.

Every person has a home folder of their own (their "machine": the cwd of each of their
commands, their key folder, their audit log) and a passphrase of their own. Nothing moves
between homes except what `carry` copies, as a person would carry a file: public keys,
the draft, the finished trust folder, the bundle. At the end no private key is found
outside its owner's home.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FULL_SPEC, need, run_airlock, small_inputs, write_spec
from installer.deploy.audit import AuditLog

PASSES = {"alice": "alice's own passphrase", "bob": "bob-has-another-one",
          "carol": "carol 3rd passphrase", "dave": "dave replaces carol",
          "erin": "erin is new too", "mallory": "mallory is nobody"}
V1 = ("alice", "bob", "carol")


class Site:
    """People on separate machines: ROOT/WHO is WHO's machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def home(self, who: str) -> Path:
        d = self.root / who
        d.mkdir(exist_ok=True)
        return d

    def run(self, who: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        env = {"PP": PASSES.get(who, ""), "AIRLOCK_SITE_DIR": str(self.home(who) / "site")}
        proc = run_airlock(*args, cwd=self.home(who), env=env)
        if ok:
            assert proc.returncode == 0, f"{who}: airlock {' '.join(args)}\n{proc.stdout}\n" \
                                         f"{proc.stderr}"
        return proc

    def carry(self, src: str, path: str, dst: str, to: str | None = None) -> None:
        a, b = self.home(src) / path, self.home(dst) / (to or path)
        if b.exists():
            shutil.rmtree(b) if b.is_dir() else b.unlink()
        shutil.copytree(a, b) if a.is_dir() else shutil.copy(a, b)

    def audit(self, who: str) -> list[tuple[str, str]]:
        return [(r["command"], r["result"]) for r in AuditLog(self.home(who) / "site").records()]

    def keys_stay_home(self) -> None:
        for key in self.root.rglob("*.key"):
            owner = key.name.split(".")[0]
            assert key.relative_to(self.root).parts[0] == owner, f"{key} left its owner"


def new_signer(site: Site, who: str) -> dict:
    p = site.run(who, "keys", "new-signer", who, "-o", "keys", "--passphrase-env", "PP",
                 "--json")
    site.carry(who, f"keys/{who}.pub", "coord", f"{who}.pub")  # the public key only
    return json.loads(p.stdout)


def sign_root(site: Site, who: str, ok: bool = True, draft: str = "draft"
              ) -> subprocess.CompletedProcess:
    return site.run(who, "keys", "sign-root", draft, "--key", f"keys/{who}.key",
                    "--passphrase-env", "PP", "--yes", "--json", ok=ok)


def pass_draft(site: Site, frm: str, to: str, draft: str = "draft") -> None:
    site.carry(frm, draft, to)


def sign_in_turn(site: Site, signers: tuple[str, ...], draft: str = "draft") -> str:
    """The coordinator's draft carried to each signer in turn, signed, and back; returns
    the last signer (who still has a copy)."""
    holder = "coord"
    for who in signers:
        pass_draft(site, holder, who, draft)
        sign_root(site, who, draft=draft)
        holder = who
    pass_draft(site, holder, "coord", draft)
    return holder


def finalize(site: Site, who: str, out: str, ok: bool = True, draft: str = "draft"
             ) -> subprocess.CompletedProcess:
    return site.run(who, "keys", "finalize-root", draft, "-o", out, "--json", ok=ok)


def error(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    text = " ".join((proc.stdout + proc.stderr).split())
    for w in words:
        assert w in text, text
    return text


def v1_root(site: Site, signed_by: tuple[str, ...] = ("alice", "bob")) -> None:
    """The whole v1 ceremony, ending with the root finalised at the coordinator and in the
    signers' own key folders."""
    for who in V1:
        new_signer(site, who)
    site.run("coord", "keys", "propose-root", *(f for w in V1 for f in
                                                ("--signer", f"{w}={w}.pub")),
             "--threshold", "2", "-o", "draft")
    sign_in_turn(site, tuple(signed_by))
    finalize(site, "coord", "trust")
    for who in V1:
        pass_draft(site, "coord", who)
        finalize(site, who, "keys")


@pytest.fixture(scope="module")
def unsigned_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = small_inputs(tmp_path_factory.mktemp("builder"))
    spec = write_spec(d, FULL_SPEC)
    run_airlock("bundle", "build", str(spec), "-o", str(d / "bundle"), cwd=d, check=True)
    return d / "bundle"


def sign_bundle(site: Site, bundle: Path, signers: tuple[str, ...], *extra: str) -> None:
    shutil.copytree(bundle, site.home("builder") / "bundle", dirs_exist_ok=False)
    holder = "builder"
    for who in signers:
        site.carry(holder, "bundle", who)
        site.run(who, "bundle", "sign", "bundle", "--key", f"keys/{who}.key",
                 "--passphrase-env", "PP", *extra)
        holder = who
    site.carry(holder, "bundle", "verifier")


def verify(site: Site, pinned: str = "root.json") -> subprocess.CompletedProcess:
    return site.run("verifier", "bundle", "verify", "bundle", "--trust", pinned,
                    "--state", "state", "--json", ok=False)


# --------------------------------------------------------------------------- the good path

def test_three_signers_2_of_3_then_a_bundle_verifies_with_airlock_and_ssh_keygen(
        tmp_path: Path, unsigned_bundle: Path) -> None:
    need("ssh-keygen")
    site = Site(tmp_path)
    made = {who: new_signer(site, who) for who in V1}
    for who in V1:
        key = site.home(who) / "keys" / f"{who}.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert b"BEGIN OPENSSH PRIVATE KEY" in key.read_bytes()
        pub = site.home("coord") / f"{who}.pub"
        assert len(pub.read_text().splitlines()) == 1
        # the fingerprint the signers compare is the one stock ssh-keygen shows
        shown = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True,
                               text=True, check=True).stdout.split()[1]
        assert made[who]["fingerprint"] == shown
        # stock ssh-keygen opens the key with that signer's passphrase, and no other
        ok = subprocess.run(["ssh-keygen", "-y", "-P", PASSES[who], "-f", str(key)],
                            capture_output=True)
        assert ok.returncode == 0 and ok.stdout.split()[1] == pub.read_text().split()[1].encode()
        assert subprocess.run(["ssh-keygen", "-y", "-P", PASSES["mallory"], "-f", str(key)],
                              capture_output=True).returncode != 0

    p = site.run("coord", "keys", "propose-root", "--signer", "alice=alice.pub",
                 "--signer", "bob=bob.pub", "--signer", "carol=carol.pub", "--threshold", "2",
                 "-o", "draft", "--json")
    doc = json.loads(p.stdout)
    assert (doc["rootVersion"], doc["threshold"], doc["complete"]) == (1, 2, False)
    assert {s["name"]: s["fingerprint"] for s in doc["signers"]} == \
        {w: made[w]["fingerprint"] for w in V1}
    draft = site.home("coord") / "draft"
    assert sorted(p.name for p in draft.rglob("*")) == ["policy.json", "root-draft.json"]
    root = json.loads((draft / "root-draft.json").read_text())
    assert root["signatures"] == [] and b"PRIVATE" not in (draft / "root-draft.json").read_bytes()
    assert sorted(k["x-airlock-name"] for k in root["signed"]["keys"].values()) == list(V1)
    assert all(r["threshold"] == 2 and len(r["keyids"]) == 3
               for r in root["signed"]["roles"].values())

    # alice signs, on her machine; what she was shown names every signer and fingerprint
    pass_draft(site, "coord", "alice")
    shown = site.run("alice", "keys", "sign-root", "draft", "--key", "keys/alice.key",
                     "--passphrase-env", "PP", "--yes")
    assert "signed root v1 as alice" in " ".join(shown.stdout.split())
    doc = json.loads(sign_root(site, "alice").stdout)  # again: harmless
    assert doc["added"] is False and doc["signer"] == "alice"
    assert len(json.loads((site.home("alice") / "draft/root-draft.json").read_text())
               ["signatures"]) == 1
    show = site.run("alice", "keys", "show", "draft").stdout
    for who in V1:
        assert who in show and made[who]["fingerprint"] in show
    assert "threshold 2 of 3" in show and "expires" in show

    # below threshold: refused, naming how many more and from whom
    pass_draft(site, "alice", "coord")
    text = error(finalize(site, "coord", "trust", ok=False), 7,
                 "1 more from the v1 signers (any of: bob, carol)")
    assert "not enough" in text or "not signed by enough" in text
    assert not (site.home("coord") / "trust").exists()

    pass_draft(site, "coord", "bob")
    doc = json.loads(sign_root(site, "bob").stdout)
    assert doc["added"] and doc["complete"]
    pass_draft(site, "bob", "coord")
    doc = json.loads(finalize(site, "coord", "trust").stdout)
    trust = site.home("coord") / "trust"
    assert sorted(p.relative_to(trust).as_posix() for p in trust.rglob("*")) == [
        "alice.pub", "bob.pub", "carol.pub", "policy.json", "root.json", "roots",
        "roots/1.root.json"]
    assert (trust / "root.json").read_bytes() == (trust / "roots/1.root.json").read_bytes()
    # each signer puts the root beside their own key (checking the signatures themselves)
    for who in ("alice", "bob"):
        pass_draft(site, "coord", who)
        finalize(site, who, "keys")
        assert (site.home(who) / "keys/root.json").read_bytes() == \
            (trust / "root.json").read_bytes()

    # a bundle signed by alice and bob, each with their own folder
    site.carry("coord", "trust/root.json", "verifier", "root.json")
    site.run("coord", "keys", "allowed-signers", "trust", "-o", "allowed_signers")
    site.carry("coord", "allowed_signers", "verifier")
    sign_bundle(site, unsigned_bundle, ("alice", "bob"))
    p = verify(site)
    assert p.returncode == 0, p.stdout
    doc = json.loads(p.stdout)
    assert doc["signers"] == ["alice", "bob"] and doc["threshold"] == 2
    assert doc["sshsig"] == {"alice": "valid", "bob": "valid"}
    bundle = site.home("verifier") / "bundle"
    for who in ("alice", "bob"):
        with open(bundle / "SHA256SUMS", "rb") as f:
            proc = subprocess.run(["ssh-keygen", "-Y", "verify", "-f",
                                   str(site.home("verifier") / "allowed_signers"), "-I", who,
                                   "-n", "airlock-bundle@v1", "-s",
                                   str(bundle / f"SHA256SUMS.{who}.sig")], stdin=f,
                                  capture_output=True, text=True)
        assert proc.returncode == 0 and "Good" in proc.stdout + proc.stderr, proc.stderr

    site.keys_stay_home()
    assert ("keys new-signer", "ok") in site.audit("carol")
    assert site.audit("alice").count(("keys sign-root", "ok")) == 2
    assert site.audit("coord") == [("keys propose-root", "ok"), ("keys finalize-root", "failed"),
                                   ("keys finalize-root", "ok")]


# --------------------------------------------------------------------------- refusals

def test_a_key_the_draft_does_not_list_is_refused(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for who in V1:
        new_signer(site, who)
    site.run("coord", "keys", "propose-root", "--signer", "alice=alice.pub", "--signer",
             "bob=bob.pub", "--signer", "carol=carol.pub", "--threshold", "2", "-o", "draft")
    rogue = new_signer(site, "mallory")
    pass_draft(site, "coord", "mallory")
    before = (site.home("mallory") / "draft/root-draft.json").read_bytes()
    error(sign_root(site, "mallory", ok=False), 7, rogue["fingerprint"],
          "is not a signer of the draft's root v1", "refusing to sign")
    assert (site.home("mallory") / "draft/root-draft.json").read_bytes() == before
    # and a wrong passphrase for a listed key
    pass_draft(site, "coord", "bob")
    p = site.run("bob", "keys", "sign-root", "draft", "--key", "keys/bob.key",
                 "--passphrase-env", "WRONG", "--yes", ok=False)
    assert p.returncode == 2  # the variable is not set: a usage error, nothing signed
    p = run_airlock("keys", "sign-root", "draft", "--key", "keys/bob.key", "--passphrase-env",
                    "PP", "--yes", cwd=site.home("bob"), env={"PP": PASSES["alice"]})
    error(p, 7, "keys/bob.key: wrong passphrase")
    assert json.loads((site.home("bob") / "draft/root-draft.json").read_text())[
        "signatures"] == []


def test_a_draft_edited_after_a_signature_is_refused(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for who in V1:
        new_signer(site, who)
    site.run("coord", "keys", "propose-root", "--signer", "alice=alice.pub", "--signer",
             "bob=bob.pub", "--signer", "carol=carol.pub", "--threshold", "2", "-o", "draft")
    pass_draft(site, "coord", "alice")
    sign_root(site, "alice")
    # on the way to bob, someone lowers the threshold to 1
    pass_draft(site, "alice", "bob")
    path = site.home("bob") / "draft/root-draft.json"
    doc = json.loads(path.read_text())
    for role in doc["signed"]["roles"].values():
        role["threshold"] = 1
    path.write_text(json.dumps(doc, indent=1))
    edited = path.read_bytes()
    error(sign_root(site, "bob", ok=False), 7, "the draft was changed after it was signed",
          "alice", "no longer match")
    assert path.read_bytes() == edited  # bob's signature was not added
    error(finalize(site, "bob", "trust", ok=False), 7, "no longer match")
    assert not (site.home("bob") / "trust").exists()
    p = site.run("bob", "keys", "show", "draft", ok=False)
    error(p, 7, "no longer match")


def test_bad_input_one_message_each_and_nothing_written(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for who in ("alice", "bob"):
        new_signer(site, who)

    def propose(*args: str) -> subprocess.CompletedProcess:
        p = site.run("coord", "keys", "propose-root", *args, "-o", "draft", ok=False)
        assert not (site.home("coord") / "draft").exists()
        assert not list(site.home("coord").glob(".draft*"))
        return p

    error(propose("--signer", "alice=alice.pub", "--signer", "bob=nowhere/bob.pub",
                  "--threshold", "1"), 7, "cannot read")
    os.mkfifo(site.home("coord") / "fifo.pub")  # handed over on a stick: never block on it
    error(propose("--signer", "alice=fifo.pub", "--threshold", "1"), 7,
          "fifo.pub (a public key) is a FIFO")
    (site.home("coord") / "garbage.pub").write_text("not a key\n")
    error(propose("--signer", "alice=garbage.pub", "--threshold", "1"), 7,
          "garbage.pub: not an OpenSSH public key")
    site.carry("alice", "keys/alice.key", "coord", "oops.pub")
    error(propose("--signer", "alice=oops.pub", "--threshold", "1"), 7,
          "oops.pub is a PRIVATE key: hand over only the .pub file")
    error(propose("--signer", "alice=alice.pub", "--signer", "alice=bob.pub",
                  "--threshold", "1"), 2, "signer name 'alice' is given twice")
    error(propose("--signer", "alice=alice.pub", "--signer", "bob=alice.pub",
                  "--threshold", "1"), 2, "alice and bob have the same key")
    error(propose("--signer", "alice=alice.pub", "--signer", "bob=bob.pub",
                  "--threshold", "3"), 2, "threshold 3 must be between 1 and the number of "
          "signers (2)")
    error(propose("--signer", "alice=alice.pub", "--threshold", "0"), 2, "--threshold")
    error(propose("--signer", "alice", "--threshold", "1"), 2, "use NAME=FILE.pub")
    error(propose("--signer", "Alice!=alice.pub", "--threshold", "1"), 2, "signer name")
    error(propose("--remove", "bob"), 2, "give its trust folder with --from")
    # a signer's key is made once
    p = site.run("alice", "keys", "new-signer", "alice", "-o", "keys", "--passphrase-env",
                 "PP", ok=False)
    error(p, 2, "alice.key already exists")
    p = run_airlock("keys", "new-signer", "zed", "-o", "keys", "--passphrase-env", "PP",
                    cwd=site.home("zed"), env={"PP": "short"})
    error(p, 2, "at least 8 characters")
    assert not (site.home("zed") / "keys" / "zed.key").exists()
    # errors for scripts
    p = site.run("coord", "keys", "propose-root", "--signer", "alice=alice.pub",
                 "--threshold", "2", "-o", "draft", "--json", ok=False)
    doc = json.loads(p.stdout)
    assert doc["ok"] is False and doc["exitCode"] == 2 and "threshold 2" in doc["error"]
    assert ("keys propose-root", "failed") in site.audit("coord")


# --------------------------------------------------------------------------- rotation

V2 = "draft-v2"  # the coordinator keeps v1's draft; v2's is another folder


def test_rotation_signed_by_old_and_new_is_followed_by_a_verifier_that_pinned_v1(
        tmp_path: Path, unsigned_bundle: Path) -> None:
    site = Site(tmp_path)
    v1_root(site)
    site.carry("coord", "trust/root.json", "verifier", "root-v1.json")  # pinned long ago

    new_signer(site, "dave")
    p = site.run("coord", "keys", "propose-root", "--from", "trust", "--remove", "carol",
                 "--add", "dave=dave.pub", "-o", "draft-v2", "--json")
    doc = json.loads(p.stdout)
    assert doc["rootVersion"] == 2 and doc["changes"]["added"] == ["dave"]
    assert doc["changes"]["removed"] == ["carol"] and doc["previous"]["rootVersion"] == 1
    sign_in_turn(site, ("dave", "alice"), V2)
    # the new set has 2 of 2, the old only 1 of 2: refused, naming who can still sign
    error(finalize(site, "coord", "trust", ok=False, draft=V2), 7,
          "1 more from the v1 signers (any of: bob, carol)")
    pass_draft(site, "coord", "bob", V2)
    doc = json.loads(sign_root(site, "bob", draft=V2).stdout)
    assert doc["complete"]
    pass_draft(site, "bob", "coord", V2)
    doc = json.loads(finalize(site, "coord", "trust", draft=V2).stdout)
    assert doc["retired"] == ["carol"]
    trust = site.home("coord") / "trust"
    assert (trust / "retired" / "carol.v1.pub").exists() and not (trust / "carol.pub").exists()
    assert sorted(p.name for p in (trust / "roots").iterdir()) == ["1.root.json",
                                                                   "2.root.json"]
    for who in ("alice", "dave", "carol"):
        pass_draft(site, "coord", who, V2)
        finalize(site, who, "keys", draft=V2)
    # carol's key left the root: it moved aside in her own folder and can no longer sign
    assert (site.home("carol") / "keys/retired/carol.v1.key").exists()

    sign_bundle(site, unsigned_bundle, ("alice", "dave"))
    p = verify(site, "root-v1.json")
    assert p.returncode == 0, p.stdout
    doc = json.loads(p.stdout)
    assert doc["signers"] == ["alice", "dave"] and doc["versions"]["root"] == 2
    assert sorted(x.name for x in (site.home("verifier") / "bundle/tuf").glob("*.root.json")) \
        == ["1.root.json", "2.root.json"]
    site.keys_stay_home()
    assert ("keys finalize-root", "ok") in site.audit("dave")


def test_rotation_signed_only_by_the_new_signers_is_refused(
        tmp_path: Path, unsigned_bundle: Path) -> None:
    site = Site(tmp_path)
    v1_root(site)
    site.carry("coord", "trust/root.json", "verifier", "root-v1.json")
    for who in ("dave", "erin"):
        new_signer(site, who)
    site.run("coord", "keys", "propose-root", "--from", "trust", "--remove", "bob",
             "--remove", "carol", "--add", "dave=dave.pub", "--add", "erin=erin.pub",
             "-o", "draft-v2")
    holder = sign_in_turn(site, ("dave", "erin"), V2)
    error(finalize(site, "coord", "trust", ok=False, draft=V2), 7,
          "2 more from the v1 signers (any of: alice, bob, carol)")
    # nor can they pass it off on alice with another root v1 under it: she holds the real v1
    pass_draft(site, "coord", "alice", V2)
    fake = site.home("alice") / V2 / "roots/1.root.json"
    doc = json.loads(fake.read_text())
    doc["signed"]["expires"] = "2099-01-01T00:00:00Z"
    doc["signatures"] = []
    fake.write_text(json.dumps(doc))
    error(sign_root(site, "alice", ok=False, draft=V2), 7,
          "is not the root v1 in", "alice/keys/root.json", "refusing to sign")
    assert json.loads((site.home("coord") / "trust/root.json").read_text())[
        "signed"]["version"] == 1

    # the new signers skip finalize and assemble root v2 by hand: a verifier that pinned
    # v1 refuses the chain
    for who in ("dave", "erin"):
        keys_dir = site.home(who) / "keys"
        draft = site.home(holder) / V2
        (keys_dir / "roots").mkdir()
        shutil.copy(draft / "roots/1.root.json", keys_dir / "roots/1.root.json")
        shutil.copy(draft / "root-draft.json", keys_dir / "roots/2.root.json")
        shutil.copy(draft / "root-draft.json", keys_dir / "root.json")
        shutil.copy(draft / "policy.json", keys_dir / "policy.json")
    sign_bundle(site, unsigned_bundle, ("dave", "erin"))
    p = verify(site, "root-v1.json")
    error(p, 5, "not enough valid signatures on root")
    assert not (site.home("verifier") / "state" / "test").exists()
