"""lookup('airlock_java_truststore', CA_PEM_FILE, dest=FILE): the path of a Java truststore
(PKCS#12, a trusted-certificate entry per CA, no password) holding the CA(s) of
CA_PEM_FILE, written on the controller at DEST when absent or holding other certificates
(PKCS#12 output is salted: a truststore that already matches is kept, so runs stay idempotent).
Java reads no PEM truststore; Maven in the workbenches and CI jobs verifies the repo host
with this one."""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: airlock_java_truststore
short_description: the site CA as a Java truststore (PKCS#12) on the controller
options:
  _terms: {description: PEM file of the CA certificate(s), required: true}
  dest: {description: where the truststore is kept, type: str, required: true}
"""


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

        self.set_options(var_options=variables, direct=kwargs)
        dest = self.get_option("dest")
        try:
            with open(terms[0], "rb") as f:
                cas = x509.load_pem_x509_certificates(f.read())
        except (OSError, ValueError) as e:
            raise AnsibleLookupError(f"{terms[0]}: not a readable PEM certificate ({e})") \
                from None
        try:
            with open(dest, "rb") as f:
                held = pkcs12.load_pkcs12(f.read(), None).additional_certs
            if sorted(c.certificate.fingerprint(hashes()) for c in held) == \
                    sorted(c.fingerprint(hashes()) for c in cas):
                return [dest]
        except (OSError, ValueError):
            pass
        data = pkcs12.serialize_java_truststore(
            [pkcs12.PKCS12Certificate(c, f"airlock-site-ca-{i}".encode())
             for i, c in enumerate(cas)], NoEncryption())
        os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
        tmp = dest + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
        return [dest]


def hashes() -> Any:
    from cryptography.hazmat.primitives.hashes import SHA256

    return SHA256()
