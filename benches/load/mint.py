#!/usr/bin/env python3
"""Key material and RS256 tokens for the load benchmark (standard library only).

    python3 mint.py KEY.pem OUTDIR --issuer URL --audience AUD --count N

KEY.pem is an RSA private key made by `openssl genrsa` (this script asks `openssl` for its
PKCS#1 DER form and signs with plain modular arithmetic, so no pip package is needed).
Writes into OUTDIR:

  jwks.json                 the JWKS jobgate fetches (one RSA key, kid = RFC 7638 thumbprint)
  openid-configuration      a discovery document pointing at {issuer}/jwks
  token                     one GitHub-Actions-shaped token (the "reused" token)
  tokens                    COUNT distinct valid tokens, one per line (the "fresh" ring)
  token-expired             exp one hour in the past
  token-wrong-aud           signed, valid, for another audience
  token-bad-sig             the reused token with one signature byte flipped
  token-wrong-owner         signed, valid, but repository_owner "evil" (jobgate: 403)

The ring's tokens are numbered (jti, run_id, check_run_id) from --serial-base. A large ring
(run.sh's memory mode: 130 000 tokens, about a minute) is written in batches, with progress
on stderr.

Never commit the key or the tokens: run.sh makes them in a temporary directory.
"""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

# DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1).
SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def int_bytes(value: int, length: int | None = None) -> bytes:
    if length is None:
        length = max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(length, "big")


def der_integers(der: bytes) -> list[int]:
    """The INTEGERs of a PKCS#1 RSAPrivateKey (a SEQUENCE of INTEGERs)."""

    def read_len(pos: int) -> tuple[int, int]:
        first = der[pos]
        if first < 0x80:
            return first, pos + 1
        count = first & 0x7F
        return int.from_bytes(der[pos + 1 : pos + 1 + count], "big"), pos + 1 + count

    if der[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    _, pos = read_len(1)
    values = []
    while pos < len(der):
        if der[pos] != 0x02:
            raise ValueError("expected an INTEGER")
        length, pos = read_len(pos + 1)
        values.append(int.from_bytes(der[pos : pos + length], "big"))
        pos += length
    return values


class RsaKey:
    def __init__(self, pem_path: str):
        der = subprocess.run(
            ["openssl", "rsa", "-in", pem_path, "-traditional", "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        ints = der_integers(der)
        # version, n, e, d, p, q, dp, dq, qinv
        _, self.n, self.e, self.d, self.p, self.q, self.dp, self.dq, self.qinv = ints[:9]
        self.size = (self.n.bit_length() + 7) // 8
        # The `cryptography` package, when installed, signs ~50x faster; the pure-Python
        # path below needs nothing but is slow (a few ms per token).
        self.fast = None
        try:
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding

            with open(pem_path, "rb") as handle:
                self.fast = serialization.load_pem_private_key(handle.read(), password=None)
            self.fast_padding = padding.PKCS1v15()
            self.fast_hash = hashes.SHA256()
        except ImportError:
            pass

    def sign(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RS256), using the CRT."""
        if self.fast is not None:
            return self.fast.sign(message, self.fast_padding, self.fast_hash)
        digest_info = SHA256_PREFIX + hashlib.sha256(message).digest()
        padding = b"\xff" * (self.size - len(digest_info) - 3)
        em = int.from_bytes(b"\x00\x01" + padding + b"\x00" + digest_info, "big")
        m1 = pow(em, self.dp, self.p)
        m2 = pow(em, self.dq, self.q)
        h = (self.qinv * (m1 - m2)) % self.p
        signature = m2 + h * self.q
        return int_bytes(signature, self.size)

    def check(self, message: bytes, signature: bytes) -> bool:
        digest_info = SHA256_PREFIX + hashlib.sha256(message).digest()
        em = pow(int.from_bytes(signature, "big"), self.e, self.n)
        return int_bytes(em, self.size).endswith(digest_info)

    def jwk(self) -> dict:
        n = b64url(int_bytes(self.n))
        e = b64url(int_bytes(self.e))
        # RFC 7638 thumbprint: the required members, sorted, no whitespace.
        canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"), sort_keys=True)
        kid = b64url(hashlib.sha256(canonical.encode()).digest())
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}


def claims(issuer: str, audience: str, serial: int, now: int, **override) -> dict:
    """GitHub Actions OIDC claims for job `serial` of acme/app's release workflow."""
    run_id = 14_000_000_000 + serial
    body = {
        "jti": f"6f0d1c2e-0000-4000-8000-{serial:012d}",
        "sub": "repo:acme/app:environment:production",
        "aud": audience,
        "ref": "refs/heads/main",
        "sha": "3f786850e387550fdab836ed7e6dc881de23001b",
        "repository": "acme/app",
        "repository_owner": "acme",
        "repository_owner_id": "51234567",
        "run_id": str(run_id),
        "run_number": str(100 + serial % 1000),
        "run_attempt": "1",
        "repository_visibility": "private",
        "repository_id": "812345678",
        "actor_id": "7654321",
        "actor": "octocat",
        "workflow": "release",
        "head_ref": "",
        "base_ref": "",
        "event_name": "push",
        "ref_protected": "true",
        "ref_type": "branch",
        "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
        "workflow_sha": "3f786850e387550fdab836ed7e6dc881de23001b",
        "job_workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
        "job_workflow_sha": "3f786850e387550fdab836ed7e6dc881de23001b",
        "runner_environment": "github-hosted",
        "environment": "production",
        "environment_node_id": "EN_kwDOABCDEF4AAAAB",
        "check_run_id": str(40_000_000_000 + serial),
        "iss": issuer,
        "nbf": now - 5,
        "exp": now + 2 * 3600,
        "iat": now - 5,
    }
    body.update(override)
    return body


# Worker-process state for parallel minting.
_KEY: RsaKey | None = None
_HEADER = ""
_RING: tuple[str, str, int] = ("", "", 0)  # issuer, audience, now


def _init_worker(pem_path: str, header: str, issuer: str = "", audience: str = "", now: int = 0) -> None:
    global _KEY, _HEADER, _RING
    _KEY = RsaKey(pem_path)
    _HEADER = header
    _RING = (issuer, audience, now)


def _mint(payload: dict) -> str:
    assert _KEY is not None
    signing_input = _HEADER + "." + b64url(json.dumps(payload, separators=(",", ":")).encode())
    return signing_input + "." + b64url(_KEY.sign(signing_input.encode()))


def _mint_serial(serial: int) -> str:
    issuer, audience, now = _RING
    return _mint(claims(issuer, audience, serial, now))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("key")
    parser.add_argument("outdir")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--serial-base", type=int, default=1000, help="serial (jti, run_id) of the ring's first token")
    args = parser.parse_args()

    key = RsaKey(args.key)
    jwk = key.jwk()
    header = b64url(
        json.dumps({"typ": "JWT", "alg": "RS256", "kid": jwk["kid"]}, separators=(",", ":")).encode()
    )
    os.makedirs(args.outdir, exist_ok=True)

    def write(name: str, text: str) -> None:
        with open(os.path.join(args.outdir, name), "w") as handle:
            handle.write(text)

    write("jwks.json", json.dumps({"keys": [jwk]}, indent=1) + "\n")
    write(
        "openid-configuration",
        json.dumps(
            {
                "issuer": args.issuer,
                "jwks_uri": args.issuer + "/jwks",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "repository"],
            },
            indent=1,
        )
        + "\n",
    )

    now = int(time.time())
    _init_worker(args.key, header)
    special = {
        "token": claims(args.issuer, args.audience, 0, now),
        "token-expired": claims(args.issuer, args.audience, 1, now, exp=now - 3600, iat=now - 7200, nbf=now - 7200),
        "token-wrong-aud": claims(args.issuer, "https://someone-else.example", 2, now),
        "token-wrong-owner": claims(args.issuer, args.audience, 3, now, repository_owner="evil", repository="evil/app"),
    }
    for name, payload in special.items():
        write(name, _mint(payload) + "\n")

    reused = open(os.path.join(args.outdir, "token")).read().strip()
    signing_input, _, signature = reused.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    if not key.check(signing_input.encode(), raw):
        print("mint.py: self-check of the RS256 signature failed", file=sys.stderr)
        return 1
    flipped = bytearray(raw)
    flipped[len(flipped) // 2] ^= 0x01
    write("token-bad-sig", signing_input + "." + b64url(bytes(flipped)) + "\n")

    started = time.monotonic()
    workers = max(1, min(os.cpu_count() or 1, 4))
    # Workers build the claims from the serial number, so only integers and finished tokens
    # cross processes; the ring is written batch by batch (100 000 tokens are ~140 MB).
    batch = 10_000
    minted = 0
    initargs = (args.key, header, args.issuer, args.audience, now)
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=initargs) as pool:
        with open(os.path.join(args.outdir, "tokens"), "w") as ring:
            for first in range(0, args.count, batch):
                serials = range(args.serial_base + first, args.serial_base + min(first + batch, args.count))
                tokens = list(pool.map(_mint_serial, serials, chunksize=64))
                ring.write("\n".join(tokens) + "\n")
                minted += len(tokens)
                if args.count > 2 * batch:
                    print(
                        f"mint.py: {minted:,} / {args.count:,} tokens ({time.monotonic() - started:.0f} s)",
                        file=sys.stderr,
                    )
    print(
        f"mint.py: kid {jwk['kid']}, {minted} fresh tokens of {len(reused)} bytes "
        f"in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
