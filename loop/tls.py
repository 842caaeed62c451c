"""Certificates for TLS on loopback: the tests' and benches' listeners serve real TLS.

Made by the openssl command line (P-256, one day) in milliseconds; nothing here is for
production certificates.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl_cert(
    directory: Path,
    name: str = "server",
    ca: tuple[Path, Path] | None = None,
    cn: str = "127.0.0.1",
) -> tuple[Path, Path]:
    """(cert, key) for 127.0.0.1 in `directory`: self-signed (usable as a CA), or signed by
    `ca` (cert, key)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    base = ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-subj", f"/CN={cn}", "-days", "1"]  # fmt: skip
    if ca is None:
        subprocess.run([*base, "-x509", "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE", "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    else:
        csr = directory / f"{name}.csr"
        subprocess.run([*base, "-out", str(csr)], check=True, capture_output=True)
        ext = directory / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    return cert, key
