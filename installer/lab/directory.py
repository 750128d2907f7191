"""The lab's stand-in for the bank's directory: Debian's OpenLDAP (slapd) on ``dir1`` in the
backend zone, over LDAPS only, with a certificate from the lab's own stand-in for the bank's
CA (made here, never the site's: the bank's directory is not airlock's to certify).

Like the site's DNS and NTP stand-in (ns1), it is outside the inventory: airlock never
installs or changes the bank's directory, it reads it (Keycloak's read-only federation with
a bind account that may read users and groups and nothing else). What it proves: the real
Keycloak LDAP provider and group mapper against a real LDAP server, TLS checked against a CA
the site names. What it does not: Active Directory's own schema (sAMAccountName, nested
groups), which a site sets in the keycloak role's variables.

Everything secret (the users' passwords, the bind and admin passwords, the CA key) lives in
the lab's state folder, mode 0600, and in the container; never in the repository or a log.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import tarfile
from pathlib import Path
from typing import Any

from installer.errors import LabError
from installer.fsutil import atomic_write

SUFFIX = "dc=bank,dc=example"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
BIND_DN = f"uid=keycloak,ou=services,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"
PORT = 636
# The directory's people and the one group that gets a workspace. carol is in the
# directory but not the group (the tests add her and take her away again); eve neither
# (the account the tests lock with wrong passwords).
USERS = {"alice": ("Alice", "Kim"), "bob": ("Bob", "Lee"), "carol": ("Carol", "Park"),
         "eve": ("Eve", "Choi")}
GROUP = "ai-coders"
MEMBERS = ("alice", "bob")
CONF_DIR = "/etc/ldap/airlock-lab"
DATA_DIR = "/var/lib/ldap-airlock"


def folder(state_dir: Path) -> Path:
    return state_dir / "directory"


def _ssha(password: str) -> str:
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(
        # {SSHA}: the scheme slapd's userPassword knows (the lab's stand-in only)
        hashlib.sha1(password.encode() + salt).digest() + salt).decode()  # noqa: S324


def _password(d: Path, name: str) -> str:
    """NAME.password in the lab's directory folder (0600), made once."""
    path = d / f"{name}.password"
    if path.exists():
        return path.read_text().strip()
    pw = secrets.token_urlsafe(18) + "Aa1"  # meets the realm's password policy too
    atomic_write(path, (pw + "\n").encode(), mode=0o600)
    return pw


def _ldif(d: Path) -> str:
    users = d / "users"
    users.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: bank\n"
           "o: Bank (lab stand-in)\n",
           f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
           f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
           f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
           f"dn: {BIND_DN}\nobjectClass: account\nobjectClass: simpleSecurityObject\n"
           f"uid: keycloak\nuserPassword: {_ssha(_password(d, 'bind'))}\n"]
    for name, (given, family) in USERS.items():
        out.append(f"dn: uid={name},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {name}\n"
                   f"cn: {given} {family}\ngivenName: {given}\nsn: {family}\n"
                   f"mail: {name}@bank.example\n"
                   f"userPassword: {_ssha(_password(users, name))}\n")
    out.append(f"dn: cn={GROUP},{GROUPS}\nobjectClass: groupOfNames\ncn: {GROUP}\n"
               + "".join(f"member: uid={m},{PEOPLE}\n" for m in MEMBERS))
    return "\n".join(out)


def _conf(admin_hash: str) -> str:
    return f"""# airlock lab: the bank's directory (stand-in). LDAPS only, no anonymous binds.
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile /run/slapd/airlock-lab.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {CONF_DIR}/ca.crt
TLSCertificateFile {CONF_DIR}/server.crt
TLSCertificateKeyFile {CONF_DIR}/server.key
TLSProtocolMin 3.3
disallow bind_anon
require authc
database mdb
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {admin_hash}
directory {DATA_DIR}
index objectClass,uid,member eq
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="{BIND_DN}" read by * none
"""


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def start(container: Any, state_dir: Path, fqdn: str) -> dict[str, str]:
    """Seed and start slapd on CONTAINER (the lab's dir1, reached as FQDN); return what an
    inventory needs to federate it (URL, bind DN, the bind password's and the CA's files)."""
    d = folder(state_dir)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = {f"{CONF_DIR}/slapd.conf": (_conf(_ssha(_password(d, "admin"))).encode(), 0o640),
             f"{CONF_DIR}/seed.ldif": (_ldif(d).encode(), 0o600),
             f"{CONF_DIR}/admin.password": (_password(d, "admin").encode(), 0o600)}
    container.put_archive("/", _tar(files))
    script = f"""set -e
cd {CONF_DIR}
# the bank's CA (stand-in) and the directory's certificate, for its DNS name
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \\
  -subj '/O=Bank (lab stand-in)/CN=Bank directory CA' -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN={fqdn}' \\
  -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:{fqdn}\\nextendedKeyUsage=serverAuth\\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \\
  -extfile server.ext -out server.crt 2>/dev/null
chmod 600 ca.key
chgrp openldap slapd.conf server.key && chmod 640 server.key
mkdir -p {DATA_DIR} /run/slapd
slapadd -f slapd.conf -l seed.ldif -q
chown -R openldap:openldap {DATA_DIR} /run/slapd
systemd-run --unit=airlock-lab-directory --property=Restart=on-failure \\
  /usr/sbin/slapd -d 0 -u openldap -g openldap -f {CONF_DIR}/slapd.conf \\
  -h 'ldaps:/// ldapi:///'
for i in $(seq 50); do
  LDAPTLS_CACERT=ca.crt ldapwhoami -x -H ldaps://{fqdn} -D '{ADMIN_DN}' \\
    -y admin.password >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo 'slapd did not answer on ldaps' >&2
journalctl -u airlock-lab-directory --no-pager | tail -20 >&2
exit 1
"""
    r = container.exec_run(["sh", "-c", script])
    if r.exit_code != 0:
        raise LabError(f"cannot start the lab's directory: {r.output.decode()[-1500:]}")
    bits, _ = container.get_archive(f"{CONF_DIR}/ca.crt")
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
        member = tar.extractfile("ca.crt")
        assert member is not None
        atomic_write(d / "ca.crt", member.read(), mode=0o644)
    return {"url": f"ldaps://{fqdn}:{PORT}", "bind_dn": BIND_DN,
            "bind_password_file": str(d / "bind.password"), "ca_file": str(d / "ca.crt"),
            "users_dn": PEOPLE, "groups_dn": GROUPS}


def modify(container: Any, ldif: str) -> None:
    """Change the directory as the bank's admins would (ldapmodify as its admin, on dir1)."""
    script = (f"cat > /tmp/change.ldif <<'EOF_LDIF'\n{ldif}\nEOF_LDIF\n"
              f"ldapmodify -x -H ldapi:/// -D '{ADMIN_DN}' -y {CONF_DIR}/admin.password "
              "-f /tmp/change.ldif; rc=$?; rm -f /tmp/change.ldif; exit $rc")
    out = container.exec_run(["sh", "-c", script])
    if out.exit_code != 0:
        raise LabError(f"ldapmodify failed: {out.output.decode()[-800:]}")


def set_member(container: Any, user: str, member: bool) -> None:
    """Add USER to the workspace group, or take them out of it."""
    op = "add" if member else "delete"
    modify(container, f"dn: cn={GROUP},{GROUPS}\nchangetype: modify\n{op}: member\n"
                      f"member: uid={user},{PEOPLE}\n")
