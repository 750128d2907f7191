"""``airlock demo``: the main job end to end on the embedded sample.

First, before it changes anything, what it will need from this machine (the Debian
packages of installer/system_packages.py for its steps; for the lab also root, Node 20 and
Playwright) is checked; what is missing is installed as root on Debian, or it stops (exit
8) naming all of it and the ``apt-get install`` line.

Make the sample's inputs, build the bundle from ``bundles/sample.yaml`` with its committed
lock (``--locked``: it must match byte for byte), make throwaway signer keys, sign with two
of three signers, verify against the pinned root, check it as a reviewer would with
``ssh-keygen`` and ``sha256sum``, inspect it, pack it into parts and unpack them again.

Then the closed network in the lab (unless ``--no-lab``): build ``bundles/lab.yaml`` (the
sample's content plus the Debian packages and a wheel the lab's hosts install; this needs
Debian's mirror and PyPI), sign it, ``lab up``, ``bundle import`` to the repo host, and
the baseline playbook (site CA, package sources, firewall, container engines). The lab is
left up for a person to look at; ``airlock lab down`` removes it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import click

from installer import system_packages
from installer.bundle import keys
from installer.bundle.build import BuildOptions, BuildResult, build
from installer.bundle.pack import pack, unpack
from installer.bundle.sign import sign_bundle
from installer.bundle.trust import verify_signed
from installer.cli import AbsolutePath
from installer.cli.bundle import inspect_cmd, sample_inputs_cmd
from installer.console import esc, out, progress
from installer.errors import IntegrityError
from installer.fsutil import atomic_write
from installer.site import checkout_root


def needs(no_lab: bool) -> tuple[list[str], list[str]]:
    """What the demo will use on this machine: the purposes of installer/system_packages.py
    whose Debian packages it needs, and what no Debian package gives (for the lab: root,
    Node 20, Playwright), as lines for system_packages.ensure."""
    purposes: list[str] = ["reviewer"]
    problems: list[str] = []
    if no_lab:
        return purposes, problems
    from installer.lab import (
        browser,
        codeserver,
        elasticsearch,
        engine,
        keycloak,
        llamacpp,
        oauth2proxy,
    )

    purposes += ["mirror", "source-mirrors", "lab"]  # the lab bundle: Maven and Go content
    problems += system_packages.root("for the lab (its container engine, debootstrap)")
    host = os.environ.get("DOCKER_HOST")
    if not (host and engine.answers(host)):
        purposes.append("engine")
    if not codeserver.archive_path().exists():
        purposes.append("codeserver-build")
        problems += codeserver.problems()
    if not keycloak.archive_path().exists():
        problems += keycloak.problems()
    if not oauth2proxy.archive_path().exists():
        problems += oauth2proxy.problems()
    if not elasticsearch.archive_path().exists():
        problems += elasticsearch.problems()
    if not llamacpp.archive_path().exists():
        purposes.append("llama-build")
        problems += llamacpp.problems()
    purposes.append("browser")
    problems += browser.problems()
    return purposes, problems


def _stock_tools(bundle: Path, allowed: Path, signers: list[str]) -> None:
    """What README tells a reviewer to run, run here."""
    for s in signers:
        with open(bundle / "SHA256SUMS", "rb") as f:
            r = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", s,
                                "-n", keys.NAMESPACE, "-s",
                                str(bundle / f"SHA256SUMS.{s}.sig")],
                               stdin=f, capture_output=True, text=True)
        if r.returncode:
            raise IntegrityError(f"ssh-keygen -Y verify failed for {s}: {r.stderr.strip()}")
        out.print(f"  ssh-keygen: {esc(r.stdout.strip())}")
    r = subprocess.run(["sha256sum", "-c", "--quiet", "--strict", "SHA256SUMS"], cwd=bundle,
                       capture_output=True, text=True)
    if r.returncode:
        raise IntegrityError(f"sha256sum -c failed: {r.stdout}{r.stderr}")
    out.print("  sha256sum -c SHA256SUMS: every file OK")


@click.command()
@click.option("-o", "--output", "work", type=AbsolutePath(), default=Path("out/demo"),
              show_default=True, help="Folder for the demo's keys, bundle and packed parts.")
@click.option("--no-lab", is_flag=True, help="Stop after the sample bundle (no lab, no network).")
@click.option("--passphrase-env", metavar="VAR",
              help="Take the throwaway keys' passphrase from VAR (default: random, not kept).")
def demo(work: Path, no_lab: bool, passphrase_env: str | None) -> None:
    """Build, sign, verify, inspect, pack and unpack the embedded sample bundle; then
    build the lab bundle, bring up the lab, import it to the repo host and serve it.

    First, before anything else, what it needs from this machine is checked, and the
    Debian packages missing are installed (as root on Debian), or it stops naming them."""
    out.rule("[key]0. what this machine needs")
    if not no_lab:
        # before anything is made or removed: the running lab's site folder may be in WORK
        from installer.lab import lab
        lab.refuse_if_up("`airlock lab down` removes it; then run the demo again (or "
                         "`airlock demo --no-lab` for the sample bundle alone)")
    purposes, problems = needs(no_lab)
    system_packages.ensure(purposes, lambda m: out.print(f"  {m}"), problems)
    out.print(f"[ok]ready[/]: the Debian packages for {', '.join(purposes)} are installed "
              "(installer/system_packages.py)")
    root = checkout_root("airlock demo")
    spec = root / "bundles" / "sample.yaml"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    work = work.absolute()
    out.rule("[key]1. sample inputs")
    sample_inputs_cmd.callback(False)  # type: ignore[misc]

    out.rule("[key]2. build")
    with progress() as bar:
        result = build(spec, work / "bundle", BuildOptions(locked=True), bar)
    out.print(f"[ok]built[/] {esc(result.name)} v{result.version}: {result.artifacts} artifacts, "
              f"{result.blobs} blobs, digest {result.digest} (reproducible: lock unchanged)")

    out.rule("[key]3. keys and signatures (2 of 3 signers)")
    # throwaway keys: the passphrase is random and not kept, unless a script asks for it
    passphrase = (os.environ.get(passphrase_env, "") if passphrase_env else "") \
        or secrets.token_urlsafe(24)
    kd = work / "keys"
    keys.init(kd, 3, 2, None, passphrase, keys.Policy())
    out.print(f"throwaway trust root and 3 signer keys in {esc(kd)} (passphrase random, not kept)")
    for s in ("signer-1", "signer-3"):
        r = sign_bundle(result.path, kd / f"{s}.key", passphrase)
        out.print(f"  {s} signed: {len(r['signed'])} of {r['threshold']} needed")

    out.rule("[key]4. verify against the pinned root")
    with progress() as bar:
        report = verify_signed(result.path, kd / "root.json", work / "trust-state", bar)
    if not report.ok:
        raise IntegrityError("the fresh bundle does not verify", report.to_json()["problems"])
    out.print(f"[ok]verified[/] {report.integrity.files} files; signed by "
              f"{esc(', '.join(report.signed_by))} (threshold {report.threshold}); timestamp "
              f"expires {esc(report.expires['timestamp'])}")

    out.rule("[key]5. as a reviewer, with stock tools only")
    allowed = work / "allowed_signers"
    atomic_write(allowed, keys.allowed_signers(kd).encode())
    _stock_tools(result.path, allowed, report.signed_by)

    out.rule("[key]6. inspect")
    inspect_cmd.callback(result.path, False)  # type: ignore[misc]

    out.rule("[key]7. pack into parts and unpack")
    with progress() as bar:
        packed = pack(result.path, work / "sample.tar.zst", zstd=True, level=3,
                      split=4096, force=False, progress=bar)
    out.print(f"packed into {len(packed['parts'])} parts of at most 4 KiB, index "
              f"{esc(packed['index'])}")
    with progress() as bar:
        unpacked = unpack(work / "sample.tar.zst.part001", work / "unpacked", force=False,
                          progress=bar, trust_root=kd / "root.json",
                          state_dir=work / "trust-state")
    out.print(f"[ok]unpacked[/] {unpacked['files']} files -> {esc(unpacked['path'])}; signatures "
              "verified again")

    out.rule("[key]what to look at")
    b = result.path
    out.print(esc(f"  bundle:    {b}"))
    out.print(esc(f"  image:     skopeo inspect oci:{b}:image.hello"))
    out.print(esc(f"  verify:    airlock bundle verify {b} --trust {kd / 'root.json'}"))
    out.print(esc(f"  reviewers: ssh-keygen -Y verify -f {allowed} -I signer-1 -n "
                  f"{keys.NAMESPACE} -s {b}/SHA256SUMS.signer-1.sig < {b}/SHA256SUMS"))
    out.print(esc(f"             cd {b} && sha256sum -c SHA256SUMS"))
    out.print(esc(f"  SBOM:      {b / 'sbom.cdx.json'}"))
    if not no_lab:
        _lab_part(root, work, kd, passphrase)


def _lab_part(root: Path, work: Path, kd: Path, passphrase: str) -> None:
    import time

    from installer.cli.deploy import print_preflight, print_run, print_status
    from installer.deploy.deploy import deploy, status
    from installer.deploy.importer import import_bundle
    from installer.deploy.preflight import preflight
    from installer.errors import HostError
    from installer.lab import lab

    out.rule("[key]8. the lab bundle (sample content, code-server, Keycloak, oauth2-proxy, "
             "the lab hosts' packages)")
    built = build_lab_bundle(root, work / "lab-bundle", kd, passphrase)
    out.print(f"[ok]built and signed[/] {esc(built.name)} v{built.version}: {built.artifacts} "
              f"artifacts, {built.size / 2**20:.1f} MiB")

    out.rule("[key]9. lab up (the PoC topology)")
    t = time.monotonic()
    state = lab.up(root, "poc", say=lambda m: out.print(f"  {esc(m)}"))
    out.print(f"[ok]lab up[/] in {time.monotonic() - t:.0f} s: {esc(', '.join(state.hosts))}; "
              f"inventory {esc(state.inventory)}")

    site = work / "site"
    inventory = Path(state.inventory)
    out.rule("[key]10. preflight: every host checked over SSH before anything changes")
    pf = preflight(root, inventory, site=site, bundle=built.path,
                   say=lambda m: out.print(f"  {m}"))
    print_preflight(pf)
    if not pf["ok"]:
        raise HostError("preflight failed on " + ", ".join(pf["failed"]) + ": " + "; ".join(
            p for h in pf["hosts"] for p in h["problems"]))

    out.rule("[key]11. import to the repo host")
    with progress() as bar:
        imp = import_bundle(root, built.path, inventory, trust_root=kd / "root.json",
                            site=site, progress=bar, say=lambda m: out.print(f"  {esc(m)}"))
    out.print(f"[ok]imported[/] {esc(imp['release'])} on {esc(imp['repoHost'])}: "
              f"{imp['filesCopied']} files, {imp['bytesCopied'] / 2**20:.1f} MiB copied in "
              f"{imp['seconds']} s")

    out.rule("[key]12. deploy the PoC: every host installs from the repo host only")
    first = deploy(root, inventory, site=site, phase="poc", say=lambda m: out.print(f"  {esc(m)}"))
    print_run(first)
    out.print(f"[ok]converged[/] {len(first['run']['stats'])} hosts in "
              f"{first['run']['seconds']} s: site CA trusted, apt/pip/npm pointed at the repo "
              "host, firewall, container engines")

    out.rule("[key]13. status")
    print_status(status(root, inventory, site=site))
    out.print(esc(f"  audit log: {site / 'audit.jsonl'} (airlock audit verify --site {site})"))

    out.rule("[key]14. each user's workbench, in a browser, through the gateway")
    from installer.lab import browser

    urls = workbench_urls(root, inventory)
    accounts = lab_accounts(site, urls)
    try:
        opened = browser.open_workbenches(urls, site / "pki" / "ca.crt", work / "screenshots",
                                          say=lambda m: out.print(f"  {m}"), accounts=accounts)
    finally:  # a TOTP set up before a later step failed is the user's from now on
        save_totp(site, accounts)
    for user, r in opened.items():
        how = (" after the Keycloak login (" + " + ".join(r["login"]) + ")") if r["login"] else ""
        out.print(f"  [ok]{esc(user)}[/]: VS Code workbench loaded in {r['seconds']:.1f} s"
                  f"{esc(how)} (Chromium, site CA trusted, TLS through the gateway); "
                  f"screenshot {esc(r['screenshot'])}")

    out.rule("[key]15. Continue asks the model (a workbench, through LiteLLM, the user's key)")
    ai_path(root, inventory, site, sorted(urls)[0], say=lambda m: out.print(f"  {esc(m)}"))

    out.rule("[key]16. acceptance: seed 001's go/no-go, measured on the lab")
    report = acceptance_step(root, inventory, site, work / "acceptance")

    out.rule("[key]what the lab serves")
    host = imp["repoHost"]
    out.print(esc(f"  packages and files: {imp['url']}  (apt, pypi/simple, npm, models, vsix, "
                  "files; TLS from the site CA)"))
    out.print(esc(f"  images:             {imp['registry']}  e.g. docker pull "
                  f"{imp['registry']}/hello:1.0"))
    out.print(esc(f"  served release:     {imp['url']}release.json  ({host})"))
    key = state.key
    ide = next(iter(h for h in state.hosts if h.startswith("ide")), host)
    out.print(esc(f"  try it:             ssh -i {key} -o UserKnownHostsFile="
                  f"{site / 'known_hosts'} airlock@{state.hosts[ide]['mgmt_address']} sudo "
                  f"docker pull {imp['registry']}/hello:1.0"))
    for user, r in opened.items():
        signin = "signed in with password and TOTP, " if r["login"] else ""
        out.print(esc(f"  {user + ' workbench:':<20}{r['url']}  ({signin}loaded in "
                      f"{r['seconds']:.1f} s; trust {site / 'pki' / 'ca.crt'})"))
    if accounts:
        from installer.lab import directory
        from installer.lab.lab import state_dir

        users = site / "secrets" / "keycloak" / "users"
        base = next(iter(urls.values())).split("/u/")[0]
        kc = next(iter(h for h in state.hosts if h.startswith("gw")), "gw1")
        out.print(esc(f"  sign-in:            Keycloak at {base}/auth/ ; passwords in the lab "
                      f"directory's stand-in (OpenLDAP on dir1): "
                      f"{directory.folder(state_dir()) / 'users'}/NAME.password; TOTP secrets: "
                      f"{users}/NAME.totp (0600)"))
        out.print(esc(f"  Keycloak admin:     https://{kc}:8443/auth/admin/ from the management "
                      f"zone only ({state.hosts[kc]['mgmt_address']}); user airlock-admin, "
                      f"password in {site / 'secrets' / 'keycloak' / 'admin.password'}"))
    log = next((h for h, v in state.hosts.items() if "logging" in v.get("groups", [])), None)
    if log:
        h = state.hosts[log]
        out.print(esc(f"  logs:               https://{h['mgmt_address']}:9200/airlock-*/_search "
                      f"(read-only account siem, password in "
                      f"{site / 'secrets' / 'logging' / 'siem.password'}; see README: "
                      "finding a user's actions)"))
        out.print(esc(f"  monitoring:         http://{h['mgmt_address']}:9090/alerts "
                      f"(Prometheus on {log}, from the management zone)"))
    out.print(esc(f"  acceptance report:  {report['files']['html']}"))
    out.print("  remove the lab:     airlock lab down")


def acceptance_step(root: Path, inventory: Path, site: Path, dest: Path) -> dict:
    """`airlock acceptance --phase pilot` on the lab (the PoC's rows and the Pilot's
    security checklist; a week of availability and people's answers are not measured)."""
    from installer.acceptance.acceptance import acceptance

    # 45 s of load: enough completions for a P95 on two cores (about 4 s each on the
    # lab's CPU stand-in, two users)
    doc = acceptance(root, inventory, site=site, phase="pilot", duration=45, out=dest,
                     say=lambda m: out.print(f"  {esc(m)}"))
    counts = doc["counts"]
    out.print(f"  {counts['passed']} passed, {counts['failed']} failed, "
              f"{counts['not measured']} not measured")
    for r in doc["criteria"]:
        if r["status"] == "failed":
            out.print(f"  [err]failed[/] {esc(r['title'])}: {esc(r['detail'][:200])}")
    for v in doc["verdicts"]:
        st = "ok" if v["verdict"] == "GO" else "warn"
        why = "; ".join(r for n in v["needs"] for r in n["reasons"])
        out.print(f"  [{st}]{esc(v['title'])}: {v['verdict']}[/]"
                  + (esc(f" ({why[:300]})") if why else ""))
    out.print(esc(f"  report: {doc['files']['html']}"))
    return doc


def ai_path(root: Path, inventory: Path, site: Path, user: str,
            say=print) -> dict:  # type: ignore[no-untyped-def]
    """Continue's CLI answers in USER's workbench; completion and chat latencies, direct
    and through LiteLLM, beside seed 001's thresholds (the lab's server is a CPU stand-in)."""
    from installer.lab import aipath

    t = time.monotonic()
    answer = aipath.continue_answer(root, inventory, site, user,
                                    "In one sentence: what does a Python list comprehension do?")
    say(f"{user}: Continue's CLI answered in {time.monotonic() - t:.1f} s: {answer[:400]}")
    m = aipath.latencies(root, inventory, site, user=user, requests=8, chat_requests=2,
                         say=say)
    for kind, title in (("completion", "completion (16 tokens)"),
                        ("chat", "chat (128 tokens, streamed)")):
        th = aipath.THRESHOLDS[kind]
        for via in ("direct", "litellm"):
            r = m[kind][via]
            p50, p95 = r["total_s"]["p50"], r["total_s"]["p95"]
            ttft = r["first_token_s"]["p50"] if kind == "chat" else None
            say(f"{title:<28} {via:<8} P50 {_ms(p50)}  P95 {_ms(p95)}"
                + (f"  first token P50 {_ms(ttft)}" if ttft is not None else "")
                + f"  ({r['ok']}/{r['requests']} ok)")
        ratio = aipath.overhead(m, kind)
        say(f"{'':<28} LiteLLM/direct P50 x{ratio:.2f}; seed 001: P95 < "
            f"{_ms(th['p95_max_s'])} (target {_ms(th['p95_target_s'])})" if ratio else "")
    if m.get("stand_in"):
        say(m["stand_in"])
    return {"answer": answer, "latencies": m}


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def build_lab_bundle(root: Path, dest: Path, kd: Path, passphrase: str) -> BuildResult:
    """bundles/lab.yaml built into DEST from the lab's own images, signed by two of the
    three signers in KD (the trust root's threshold)."""
    from installer.errors import LockDrift

    link_lab_images(root, say=lambda m: out.print(f"  {esc(m)}"))
    spec = root / "bundles" / "lab.yaml"
    try:
        with progress() as bar:
            built = build(spec, dest, BuildOptions(), bar)
    except LockDrift as e:
        out.print(f"[warn]{esc(str(e))}[/]")
        out.print("[warn]Debian has replaced pinned packages since bundles/lab.lock.json was "
                  "written; resolving again (the lock file is updated: review its diff)[/]")
        with progress() as bar:
            built = build(spec, dest, BuildOptions(update_lock=True, force=True), bar)
    for s in ("signer-1", "signer-3"):
        sign_bundle(built.path, kd / f"{s}.key", passphrase)
    return built


def link_lab_images(root: Path, say=print) -> None:  # type: ignore[no-untyped-def]
    """The images the lab builds itself (cached by recipe), linked where bundles/lab.yaml
    reads them."""
    from installer.lab import codeserver, elasticsearch, keycloak, llamacpp, oauth2proxy

    for m in (codeserver, keycloak, oauth2proxy, llamacpp, elasticsearch):
        m.link_into(root / "bundles" / "sample" / "build", say=say)


def lab_accounts(site: Path, users) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The lab users' accounts: the password the lab's directory stand-in was seeded with
    (LAB/directory/users/NAME.password, 0600), or a local Keycloak user's first password
    (site/secrets/keycloak/users/NAME.password, 0600), and the TOTP secret of the lab's
    stand-in for the user's phone (site/.../NAME.totp, 0600, written at the first login by
    save_totp). Empty where the lab runs without SSO."""
    from installer.lab import directory
    from installer.lab.lab import state_dir

    d = site / "secrets" / "keycloak" / "users"
    dirs = (d, directory.folder(state_dir()) / "users")
    accounts = {}
    for u in users:
        found = next((x / f"{u}.password" for x in dirs if (x / f"{u}.password").exists()), None)
        if found is not None:
            totp = d / f"{u}.totp"
            accounts[u] = {"user": u, "password": found.read_text().strip(),
                           "totp": totp.read_text().strip() if totp.exists() else None,
                           "used_file": str(d / f"{u}.totp-used")}
    return accounts


def save_totp(site: Path, accounts: dict[str, dict]) -> None:
    """Keep each account's TOTP secret (set up at its first login) in the site's secrets."""
    d = site / "secrets" / "keycloak" / "users"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    for u, a in accounts.items():
        if a.get("totp"):
            atomic_write(d / f"{u}.totp", (a["totp"] + "\n").encode(), mode=0o600)


def workbench_urls(root: Path, inventory: Path) -> dict[str, str]:
    """Each IDE user's URL at the gateway: https://GATEWAY-ADDRESS/u/ROUTE/."""
    from installer.deploy.inventory import load

    inv = load(inventory, root)
    inv.first("gateway")  # a clear error where the inventory has none
    address = inv.gateway_address()
    return {u["name"]: f"https://{address}/u/{u.get('route', u['name'])}/"
            for u in inv.var("airlock_ide_users", [])}
