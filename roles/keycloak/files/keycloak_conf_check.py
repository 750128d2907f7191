"""validate: for keycloak.conf: every line blank, a comment, or KEY=VALUE with a known
option name shape and a non-empty value (Keycloak itself would start and then fail)."""
import re
import sys

KEY = re.compile(r"^[a-z][a-z0-9-]*(--?[a-z0-9-]+)*$")
bad = []
with open(sys.argv[1], encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not KEY.match(key) or not value:
            bad.append(f"line {n}: {key or line!r}")
if bad:
    sys.exit("keycloak.conf: not KEY=VALUE: " + ", ".join(bad))
