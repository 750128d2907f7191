"""The checks `airlock acceptance` runs, each as a user or an attacker would meet the
platform: over TLS from the controller, in a user's workbench container, on each host over
SSH. None reads configuration to decide: each sends something and judges the answer.

Traffic goes only to the site's own hosts, plus one connection attempt per host to a
TEST-NET-1 address (RFC 5737, never routed) that the zone firewall must refuse.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from installer.acceptance.criteria import NOT_MEASURED
from installer.acceptance.run import Check, Context, Result, failed, figure, passed
from installer.deploy import audit
from installer.deploy.ssh import Remote
from installer.errors import HostError

OUTSIDE = ("192.0.2.1", 443)  # TEST-NET-1: outside every site, routed nowhere
RRN_PROBE = "900101-1234568"  # a resident registration number whose check digit is valid
MAX_RATE_PROBE = 200  # the most requests the rate-limit probe sends (rpm + 10 at most)


def _ca(ctx: Context) -> Path:
    return ctx.site / "pki" / "ca.crt"


def _gateway(ctx: Context) -> str:
    ctx.inv.first("gateway")  # a clear error where the inventory has none
    return str(ctx.inv.gateway_address())


def _users(ctx: Context) -> list[dict[str, Any]]:
    return list(ctx.inv.var("airlock_ide_users", []) or [])


def _workbench_url(ctx: Context, user: dict[str, Any]) -> str:
    return f"https://{_gateway(ctx)}/u/{user.get('route', user['name'])}/"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _get(url: str, ca: Path, timeout: float = 15) -> tuple[int, dict[str, str]]:
    """Status and headers of one GET, redirects not followed, TLS checked against CA."""
    tls = ssl.create_default_context(cafile=str(ca))
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=tls))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


# --- security (Pilot) ------------------------------------------------------------------

def unauthenticated(ctx: Context) -> dict[str, Result]:
    """Each user's workbench URL, with no session: never the workbench (a redirect to the
    sign-in, or 401/403)."""
    seen = {}
    for u in _users(ctx) or [{"name": "nobody"}]:
        url = _workbench_url(ctx, u)
        status, headers = _get(url, _ca(ctx))
        seen[url] = {"status": status, "location": headers.get("location", "")[:200]}
        # a redirect is a refusal unless it leads to a workbench itself (the sign-in's
        # own URL names the workbench only as where to come back to, in its query)
        to = urllib.parse.urlsplit(seen[url]["location"]).path
        if status < 300 or (status in (301, 302, 303, 307, 308) and to.startswith("/u/")):
            return {"unauthenticated_refused": failed(
                f"{url} answered {status} without a session", answers=seen)}
    return {"unauthenticated_refused": passed(
        f"{len(seen)} workbench URL(s) refused without a session", answers=seen)}


def _handshake(host: str, port: int, ca: Path, version: ssl.TLSVersion) -> str | None:
    """None when a handshake at exactly VERSION succeeds, else the failure's reason."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.load_verify_locations(cafile=str(ca))
    tls.check_hostname = False  # the address, not a name: the chain is still checked
    tls.minimum_version = tls.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        tls.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client can offer it at all
    try:
        with socket.create_connection((host, port), timeout=10) as raw, \
                tls.wrap_socket(raw) as s:
            s.version()
        return None
    except ssl.SSLError as e:
        return e.reason or str(e)
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def tls(ctx: Context) -> dict[str, Result]:
    """The gateway: TLS 1.2 and 1.3 with a chain to the site CA; TLS 1.0 and 1.1 refused
    by the server (a client that cannot offer them proves nothing: not measured); HSTS on
    the answer."""
    host, ca = _gateway(ctx), _ca(ctx)
    got = {v.name: _handshake(host, 443, ca, v) for v in
           (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2,
            ssl.TLSVersion.TLSv1_3)}
    _, headers = _get(f"https://{host}/", ca)
    hsts = headers.get("strict-transport-security", "")
    evidence = {"handshakes": {k: v or "ok" for k, v in got.items()}, "hsts": hsts}
    if got["TLSv1_2"] or got["TLSv1_3"]:
        return {"tls_only_strong": failed(f"TLS 1.2/1.3 with the site CA failed: "
                                          f"{got['TLSv1_2'] or got['TLSv1_3']}", **evidence)}
    client_side = ("NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL")
    for old in ("TLSv1", "TLSv1_1"):
        if got[old] is None:
            return {"tls_only_strong": failed(f"the gateway accepts {old}", **evidence)}
        if got[old] in client_side and "ALERT" not in got[old]:
            return {"tls_only_strong": {"status": NOT_MEASURED, "evidence": evidence,
                                        "detail": f"this controller's TLS library cannot "
                                                  f"offer {old} ({got[old]})"}}
    try:
        max_age = int(hsts.split("max-age=")[1].split(";")[0]) if "max-age=" in hsts else 0
    except ValueError:
        max_age = 0
    if max_age <= 0:
        return {"tls_only_strong": failed("no Strict-Transport-Security with a max-age",
                                          **evidence)}
    return {"tls_only_strong": passed(f"TLS 1.2/1.3 only, site CA chain, HSTS max-age "
                                      f"{max_age}", **evidence)}


def audit_chain(ctx: Context) -> dict[str, Result]:
    v = audit.AuditLog(ctx.site).verify()
    if not v["records"]:
        return {"audit_chain": failed(f"{v['path']} has no record")}
    if not v["ok"]:
        return {"audit_chain": failed(f"{len(v['problems'])} problem(s) in {v['path']}: "
                                      + v["problems"][0]["problem"], problems=v["problems"])}
    return {"audit_chain": passed(f"{v['records']} records chained, head matches",
                                  path=v["path"])}


def _outside_count(r: Remote) -> int | None:
    rc, out, _ = r.run(["nft", "-j", "list", "table", "inet", "airlock"], check=False)
    if rc != 0:
        return None
    total, found = 0, False
    for item in json.loads(out).get("nftables", []):
        rule = item.get("rule")
        if rule and rule.get("comment") == "airlock_outside":
            found = True
            total += sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    return total if found else None


CONNECT = ("import socket,sys\ns=socket.socket()\ns.settimeout(3)\n"
           "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('connected')\n"
           "except OSError as e:\n print(type(e).__name__)\n")


def egress(ctx: Context) -> dict[str, Result]:
    """From one host of each zone: a connection to an address outside the site fails, and
    the zone firewall's airlock_outside counter shows it was the firewall that stopped it."""
    zones: dict[str, str] = {}
    for name in ctx.inv.hosts:
        zone = str(ctx.inv.host(name).vars.get("airlock_zone", name))
        zones.setdefault(zone, name)
    seen: dict[str, Any] = {}
    for zone, name in sorted(zones.items()):
        with Remote(ctx.inv.host(name), ctx.site) as r:
            before = _outside_count(r)
            _, out, err = r.run(["python3", "-c", CONNECT, *map(str, OUTSIDE)], check=False)
            after = _outside_count(r)
        seen[name] = {"zone": zone, "connect": out.strip() or err.strip()[-200:],
                      "counted": None if before is None or after is None else after - before}
        if out.strip() == "connected":
            return {"egress_refused": failed(f"{name} ({zone}) connected to "
                                             f"{OUTSIDE[0]}:{OUTSIDE[1]}", hosts=seen)}
        if not seen[name]["counted"]:
            return {"egress_refused": failed(
                f"{name} ({zone}): the connection failed but the firewall's airlock_outside "
                "counter did not count it (no rule, or the packet went elsewhere)", hosts=seen)}
    return {"egress_refused": passed(f"{len(seen)} zone(s): refused by the zone firewall",
                                     hosts=seen)}


# --- the AI path, from a user's workbench ----------------------------------------------

# Node's fetch in a user's workbench (the image has node, not curl): `node -e FETCH URL
# [TIMES [MAXCHARS]]` with the key's line, then the JSON body, on stdin; prints
# [[status, text], ...] as JSON (each text cut to MAXCHARS, 2000 by default).

FETCH = ("const [u,n,m]=process.argv.slice(1);const s=require('fs').readFileSync(0,'utf8');"
         "const i=s.indexOf('\\n');const k=s.slice(0,i).trim(),b=s.slice(i+1);"
         "Promise.all([...Array(Number(n||1))].map(()=>fetch(u,{method:'POST',"
         "headers:{'content-type':'application/json',...(k?{authorization:'Bearer '+k}:{})},"
         "body:b}).then(async r=>[r.status,(await r.text()).slice(0,Number(m||2000))])))"
         ".then(x=>console.log(JSON.stringify(x)))"
         ".catch(e=>{console.log(JSON.stringify([['ERR',e.message]]));process.exit(2)})")


def _llm_url(ctx: Context) -> str:
    h = ctx.inv.first("llm_gateway")
    address = h.vars.get("airlock_zone_address") or h.address
    return f"http://{address}:{ctx.inv.var('litellm_port', 4000)}/v1"


def _key(ctx: Context, user: str) -> str:
    path = ctx.site / "secrets" / "litellm" / "users" / f"{user}.key"
    try:
        return path.read_text().strip()
    except OSError as e:
        raise HostError(f"no LiteLLM key for {user} ({path}: {e.strerror})",
                        hint="deploy first: the AI path's play makes each user's key") from None


def _from_workbench(ctx: Context, user: str, path: str, body: dict[str, Any],
                    times: int = 1, key: str | None = None) -> list[tuple[Any, str]]:
    """TIMES parallel POSTs from USER's workbench container (Node's fetch: what the
    workbench's own processes use). The key and the body go on stdin, never on a command
    line: sudo logs its command lines and the logs are shipped to the store, where a
    probe's prompt (a resident registration number) must not be."""
    ide = ctx.inv.first("ide")
    k = _key(ctx, user) if key is None else key
    with Remote(ide, ctx.site) as r:
        rc, out, err = r.run(["docker", "exec", "-i", f"code-server-{user}", "node", "-e",
                              FETCH, _llm_url(ctx) + path, str(times)],
                             check=False, stdin=f"{k}\n{json.dumps(body)}".encode())
    try:
        return [tuple(x) for x in json.loads(out)]
    except ValueError:
        raise HostError(f"{user}'s workbench on {ide.name}: the request did not run "
                        f"({rc}): {(err or out).strip()[-300:]}") from None


def _first_user(ctx: Context) -> str:
    users = _users(ctx)
    if not users:
        raise HostError("the inventory names no IDE user (airlock_ide_users)")
    return str(users[0]["name"])


def _dlp_masked(ctx: Context, user: str) -> bool:
    """The LLM gateway's audit trail ends with USER's masking by the RRN rule."""
    audit_file = f"{ctx.inv.var('litellm_log_dir', '/var/log/airlock-litellm')}/audit.jsonl"
    with Remote(ctx.inv.first("llm_gateway"), ctx.site) as r:
        _, out, _ = r.run(["tail", "-n", "20", str(audit_file)], check=False)
    for line in reversed(out.splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "dlp" and rec.get("user") == user:
            return rec.get("action") == "masked" and \
                "kr_resident_registration_number" in (rec.get("rules") or {})
    return False


def dlp(ctx: Context) -> dict[str, Result]:
    user = _first_user(ctx)
    ((status, text),) = _from_workbench(ctx, user, "/chat/completions", {
        "model": "chat", "max_tokens": 4,
        "messages": [{"role": "user", "content": f"is {RRN_PROBE} a valid number?"}]})
    if status == 400 and "kr_resident_registration_number" in text:
        return {"dlp_blocks": passed(f"{user}'s prompt with a resident registration number: "
                                     "400, rule kr_resident_registration_number",
                                     status=status)}
    if status == 200 and RRN_PROBE not in text and _dlp_masked(ctx, user):
        # an answer without the number proves nothing by itself: the gateway's own audit
        # record of the masking does
        return {"dlp_blocks": passed("masked by policy (the gateway's audit names the rule)",
                                     status=status)}
    return {"dlp_blocks": failed(f"a prompt with a resident registration number got {status}",
                                 status=status, answer=text[:300])}


def rate_limit(ctx: Context) -> dict[str, Result]:
    user = _users(ctx)[-1]["name"] if _users(ctx) else _first_user(ctx)
    limits = ctx.inv.var("litellm_default_limits", {}) or {}
    rpm = limits.get("rpm")
    if not isinstance(rpm, int) or rpm <= 0:
        return {"rate_limited": {"status": NOT_MEASURED,
                                 "detail": "no rpm limit set (litellm_default_limits.rpm)"}}
    if rpm + 10 > MAX_RATE_PROBE:
        return {"rate_limited": {"status": NOT_MEASURED,
                                 "detail": f"rpm {rpm}: more than this probe sends "
                                           f"({MAX_RATE_PROBE})"}}
    got = _from_workbench(ctx, user, "/completions", {
        "model": "autocomplete", "prompt": "x", "max_tokens": 1}, times=rpm + 10)
    statuses = [s for s, _ in got]
    ok, throttled = statuses.count(200), statuses.count(429)
    evidence = {"sent": len(statuses), "200": ok, "429": throttled, "rpm": rpm}
    if throttled and ok <= rpm and set(statuses) <= {200, 429}:
        return {"rate_limited": passed(f"{user}: {throttled} of {len(statuses)} throttled "
                                       f"(limit {rpm}/min)", **evidence)}
    return {"rate_limited": failed(f"{user}: {ok} answered, {throttled} throttled, limit "
                                   f"{rpm}/min", statuses=sorted(set(map(str, statuses))),
                                   **evidence)}


def continue_checks(ctx: Context) -> dict[str, Result]:
    """Continue's own CLI answers in the user's workbench (its config, their key); and a
    code completion on the endpoint the workbench's autocomplete uses."""
    from installer.lab import aipath

    user = _first_user(ctx)
    out: dict[str, Result] = {}
    t0 = time.monotonic()
    try:
        answer = aipath.continue_answer(ctx.root, ctx.inventory, ctx.site, user,
                                        "In one sentence: what is a Python list?")
        out["continue_chat"] = passed(f"answered in {time.monotonic() - t0:.1f} s",
                                      answer=answer[:300]) if answer.strip() else failed(
            "Continue's CLI printed nothing")
    except HostError as e:
        out["continue_chat"] = failed(str(e))
    ((status, text),) = _from_workbench(ctx, user, "/completions", {
        "model": "autocomplete", "prompt": "def add(a, b):\n    return", "max_tokens": 8})
    try:
        completion = json.loads(text)["choices"][0]["text"] if status == 200 else ""
    except (ValueError, KeyError, IndexError):
        completion = ""
    out["continue_completion"] = (passed("completion returned tokens", status=status,
                                         completion=completion[:200]) if completion.strip()
                                  else failed(f"completion answered {status} with no text",
                                              answer=text[:300]))
    return out


def latency(ctx: Context) -> dict[str, Result]:
    """N simulated users for the run's duration, through LiteLLM (and directly, for the
    gateway's share), from the LLM gateway host: completion and chat percentiles."""
    from installer.acceptance.report import series
    from installer.lab import aipath

    m = aipath.latencies(ctx.root, ctx.inventory, ctx.site, user=None, users=ctx.users,
                         requests=max(20, ctx.users * 5), chat_requests=max(5, ctx.users),
                         duration=ctx.duration, say=ctx.say)
    comp, chat = m["completion"]["litellm"], m["chat"]["litellm"]
    ctx.shared["measurements"] = {
        "completion": series([x * 1000 for x in comp.get("samples", [])], "ms"),
        "chat_total": series(chat.get("samples", []), "s"),
        "chat_first_token": series(chat.get("first_samples", []), "s")}
    ctx.shared["stand_in"] = m.get("stand_in")
    p95c, p95t = comp["total_s"]["p95"], chat["total_s"]["p95"]
    requests = comp["requests"] + chat["requests"]
    errors = (comp["requests"] - comp["ok"]) + (chat["requests"] - chat["ok"])
    return {"completion_p95": figure("completion_p95", p95c * 1000 if p95c else None,
                                     f"{comp['ok']} completions, {ctx.users} user(s)"),
            "chat_p95": figure("chat_p95", p95t, f"{chat['ok']} chats, {ctx.users} user(s)"),
            "error_rate": figure("error_rate", 100 * errors / requests if requests else None,
                                 f"{errors} of {requests} requests failed")}


EXTENSIONS_DIR = "/opt/airlock/extensions"


def _listed(r: Remote, user: str) -> list[str]:
    rc, out, err = r.run(["docker", "exec", f"code-server-{user}", "code-server",
                          "--extensions-dir", EXTENSIONS_DIR, "--list-extensions"], check=False)
    if rc != 0:
        raise HostError(f"code-server in {user}'s workbench cannot list its extensions "
                        f"({rc}): {err.strip()[-300:]}")
    return sorted(x.strip().lower() for x in out.split() if x.strip())


def extensions(ctx: Context) -> dict[str, Result]:
    """Every extension the inventory asks for is installed in each user's workbench."""
    wanted = sorted(str(x).lower() for x in ctx.inv.var("airlock_ide_extensions", []) or [])
    seen = {}
    with Remote(ctx.inv.first("ide"), ctx.site) as r:
        for u in _users(ctx):
            seen[u["name"]] = _listed(r, u["name"])
    missing = {u: sorted(set(wanted) - set(got)) for u, got in seen.items()
               if set(wanted) - set(got)}
    if not seen:
        return {"extensions": failed("the inventory names no IDE user")}
    if missing:
        return {"extensions": failed(f"missing: {missing}", installed=seen)}
    return {"extensions": passed(f"{len(wanted)} extension(s) in {len(seen)} workbench(es)",
                                 installed=seen)}


PROBE_VSIX = "/home/coder/.airlock-acceptance-probe.vsix"  # in the user's own home


def extension_whitelist(ctx: Context) -> dict[str, Result]:
    """A user installs a VSIX that no whitelist has (made here, harmless) into the
    workbench's extensions folder: refused, the listing unchanged, every installed
    extension on the inventory's whitelist, no marketplace."""
    import tempfile

    from installer.lab.fixtures import make_vsix

    user = _first_user(ctx)
    with tempfile.TemporaryDirectory(prefix="airlock-probe-") as tmp:
        vsix = make_vsix(Path(tmp) / "probe.vsix", "airlock-acceptance", "not-whitelisted",
                         "0.0.1", "^1.80.0").read_bytes()
    name = "airlock-acceptance.not-whitelisted"
    box = f"code-server-{user}"
    with Remote(ctx.inv.first("ide"), ctx.site) as r:
        before = _listed(r, user)
        r.run(["docker", "exec", "-i", box, "sh", "-c", f"cat > {PROBE_VSIX}"], stdin=vsix)
        try:
            rc, out, err = r.run(["docker", "exec", box, "code-server", "--extensions-dir",
                                  EXTENSIONS_DIR, "--install-extension", PROBE_VSIX],
                                 check=False)
            _, gallery, _ = r.run(["docker", "exec", box, "printenv", "EXTENSIONS_GALLERY"],
                                  check=False)
            after = _listed(r, user)
        finally:
            r.run(["docker", "exec", box, "rm", "-f", PROBE_VSIX], check=False)
    evidence = {"install": {"rc": rc, "said": (out + err)[-300:]}, "gallery": gallery.strip(),
                "installed": after}
    whitelist = {str(x).lower() for x in ctx.inv.var("airlock_ide_extension_whitelist", [])
                 or []}
    off = sorted(x for x in after if x not in whitelist)
    if off:
        return {"extension_whitelist": failed(
            f"{user}'s workbench has extensions no whitelist names: {', '.join(off)}",
            **evidence)}
    if name in after or after != before:
        return {"extension_whitelist": failed(
            f"{user} installed {name}, which no whitelist names", **evidence)}
    if gallery.strip() != "{}":
        return {"extension_whitelist": failed(
            "the workbench has an extension marketplace configured", **evidence)}
    return {"extension_whitelist": passed(
        f"{user}'s install of an unlisted VSIX refused; no marketplace", **evidence)}


def git(ctx: Context) -> dict[str, Result]:
    """Clone, commit and push from the first user's workbench to the source zone's Git
    server (``airlock_git_url``, repository ``airlock_acceptance_git_repo``): a branch of
    its own, pushed, read back from the server, then deleted. Not measured where the
    inventory deploys no Git server."""
    url = str(ctx.inv.var("airlock_git_url", "") or "")
    if not url or ctx.inv.var("airlock_git_server", "") == "none":
        return {"git": {"status": NOT_MEASURED,
                        "detail": "no Git server is deployed by this inventory "
                                  "(airlock_git_url unset)"}}
    repo = str(ctx.inv.var("airlock_acceptance_git_repo", "demo.git"))
    user = _first_user(ctx)
    branch = f"airlock-acceptance-{int(time.time())}"
    remote = f"{url.rstrip('/')}/{repo}"
    script = (f"set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; cd \"$d\"; "
              f"git clone -q {remote} r; cd r; git checkout -q -b {branch}; "
              "echo 'airlock acceptance probe' > .airlock-acceptance; "
              "git add .airlock-acceptance; "
              "git -c user.name=airlock-acceptance -c user.email=acceptance@airlock.invalid "
              "commit -q -m 'airlock acceptance probe'; "
              f"git push -q origin {branch}; c=$(git rev-parse HEAD); "
              f"s=$(git ls-remote origin refs/heads/{branch} | cut -f1); "
              f"git push -q origin --delete {branch}; echo \"$c $s\"")
    t0 = time.monotonic()
    with Remote(ctx.inv.first("ide"), ctx.site) as r:
        rc, out, err = r.run(["timeout", "120", "docker", "exec", f"code-server-{user}", "sh",
                              "-c", script], check=False)
    seconds = time.monotonic() - t0
    evidence = {"user": user, "remote": remote, "branch": branch,
                "seconds": round(seconds, 2), "said": (out + err)[-300:]}
    words = out.split()
    if rc != 0 or len(words) < 2:
        return {"git": failed(f"clone, commit and push from {user}'s workbench to {remote} "
                              "failed", **evidence)}
    if words[-2] != words[-1]:
        return {"git": failed(f"the server holds {words[-1][:12]} for {branch}, the workbench "
                              f"pushed {words[-2][:12]}", **evidence)}
    return {"git": passed(f"{user} cloned {remote}, committed and pushed {words[-2][:12]} "
                          f"(read back from the server) in {seconds:.1f} s", **evidence)}


CHECKS = (
    Check("Git from a workbench", ("git",), ("gitlab", "ide"), git),
    Check("extensions installed", ("extensions",), ("ide",), extensions),
    Check("extension whitelist", ("extension_whitelist",), ("ide",), extension_whitelist,
          "pilot"),
    Check("Continue answers and completes", ("continue_chat", "continue_completion"),
          ("ide", "llm_gateway"), continue_checks),
    Check("latency under load", ("completion_p95", "chat_p95", "error_rate"),
          ("llm_gateway",), latency),
    Check("unauthenticated access", ("unauthenticated_refused",), ("gateway",),
          unauthenticated, "pilot"),
    Check("TLS and HSTS", ("tls_only_strong",), ("gateway",), tls, "pilot"),
    Check("DLP probe", ("dlp_blocks",), ("ide", "llm_gateway"), dlp, "pilot"),
    Check("rate limit", ("rate_limited",), ("ide", "llm_gateway"), rate_limit, "pilot"),
    Check("egress from each zone", ("egress_refused",), (), egress, "pilot"),
    Check("audit chain", ("audit_chain",), (), audit_chain, "pilot"),
)
