#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ (small files, regenerated at will).

    python3 fuzz/make_seeds.py

- config: config/*.toml, and every TOML-looking string literal in tests/*.rs and
  src/config/*.rs (test configs, fragments with format! holes included: the fuzzer
  mutates them anyway), plus the fuzz targets' own config.
- token / authorize: bearer values built like the tests' tokens (good and bad headers,
  payloads, fake signatures). token seeds start with the target's control byte.
- jwks: JWKS documents with real RSA, P-256 and Ed25519 public keys (made with openssl)
  and the malformed entries the tests use; each starts with the control byte.
- rules / headers / path: glob, regex and TOML condition text, claim-like text, paths.
Needs python3 and openssl; uses only the standard library.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
SEEDS = os.path.join(FUZZ, "seeds")
MAX_SEED = 16384


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write(target: str, data, name: str = None):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_SEED:
        return
    directory = os.path.join(SEEDS, target)
    os.makedirs(directory, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def jwt(header, claims, signature=b"\x01" * 64) -> str:
    h = b64(json.dumps(header, separators=(",", ":")).encode()) if not isinstance(header, bytes) else b64(header)
    c = b64(json.dumps(claims, separators=(",", ":")).encode()) if not isinstance(claims, bytes) else b64(claims)
    return f"{h}.{c}.{b64(signature)}"


NOW = 1_760_000_000
ISS = "http://127.0.0.1:8090"
GOOD = {
    "iss": ISS, "aud": "https://deploy.example", "sub": "repo:acme/app:ref:refs/heads/main",
    "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 300, "repository": "acme/app",
    "repository_owner": "acme", "repository_id": "89012345", "ref": "refs/heads/main",
    "environment": "production", "run_id": "42", "check_run_id": "7", "run_attempt": "1",
}


def tokens():
    headers = [
        {"alg": "RS256", "typ": "JWT", "kid": "rsa-1"},
        {"alg": "ES256", "kid": "ec-1"},
        {"alg": "RS256"},
        {"alg": "none"},
        {"alg": "HS256", "kid": "rsa-1"},
        {"alg": "RS256", "crit": ["exp"]},
        {"alg": 256},
        {"alg": "RS256", "kid": 7},
        {"typ": "JWT", "kid": "rsa-1"},
        b'{"alg":"RS256","alg":"none"}',
        b'["RS256"]',
        b"not json",
    ]
    claims = [
        GOOD,
        dict(GOOD, aud=["x", "https://deploy.example"]),
        dict(GOOD, exp="9999999999"),
        dict(GOOD, exp=(NOW + 300) + 0.5),
        dict(GOOD, iss=7),
        dict(GOOD, sub={"a": 1}),
        dict(GOOD, repository="acme/app\r\nx-injected: 1"),
        dict(GOOD, jti="j" * 300, run_id=42),
        b"[1,2]",
    ]
    out = []
    for header in headers:
        for claim in claims[:3] if header is not headers[0] else claims:
            out.append(jwt(header, claim))
    out += ["", "a.b.c", "x.y.z", "a.b", "abc", "a..c", ".b.c", "a.b.c=", "a.b.c.d", "!!!.b.c"]
    values = []
    for token in out:
        values.append(f"Bearer {token}")
    values += ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "bEaReR   a.b.c  ", "Bearer\ta.b.c",
               "Bearer a.b.c d.e.f", "Bearer a,b", "Bearer a.b\xff.c", "Bearer a.b.c\x00Bearer a.b.c"]
    return values


def openssl(*args, stdin=None) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, input=stdin).stdout


def jwks_documents():
    docs = []
    with tempfile.TemporaryDirectory() as tmp:
        rsa = os.path.join(tmp, "rsa.pem")
        ec = os.path.join(tmp, "ec.pem")
        ed = os.path.join(tmp, "ed.pem")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa)
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec)
        openssl("genpkey", "-algorithm", "ED25519", "-out", ed)
        modulus = openssl("rsa", "-in", rsa, "-noout", "-modulus").decode().strip().split("=", 1)[1]
        n = b64(bytes.fromhex(modulus))
        e = b64((65537).to_bytes(3, "big"))
        point = openssl("pkey", "-in", ec, "-pubout", "-outform", "DER")[-65:]
        ed_x = openssl("pkey", "-in", ed, "-pubout", "-outform", "DER")[-32:]
    rsa_jwk = {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": n, "e": e}
    ec_jwk = {"kty": "EC", "kid": "ec-1", "use": "sig", "crv": "P-256",
              "x": b64(point[1:33]), "y": b64(point[33:65])}
    ed_jwk = {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b64(ed_x)}
    docs.append({"keys": [rsa_jwk, ec_jwk, ed_jwk]})
    docs.append({"keys": [rsa_jwk]})
    docs.append({"keys": [dict(rsa_jwk, kid="same"), dict(ec_jwk, kid="same")]})
    docs.append({"keys": [dict(rsa_jwk, alg="PS384", key_ops=["verify"]), dict(ec_jwk, alg="ES256")]})
    docs.append({"keys": [
        dict(rsa_jwk, use="enc"), dict(rsa_jwk, key_ops=["sign"]), dict(rsa_jwk, kid=7),
        dict(rsa_jwk, alg="HS256"), dict(rsa_jwk, alg="ES256"), dict(rsa_jwk, n="AQAB"),
        dict(rsa_jwk, n="!!"), {"kty": "oct", "k": "c2VjcmV0"}, dict(ec_jwk, crv="P-521"),
        dict(ec_jwk, x="AAAA"), dict(ed_jwk, crv="X25519"), 7, "key", None,
    ]})
    docs.append({"keys": []})
    docs.append({"keys": {}})
    docs.append({"nokeys": []})
    out = [json.dumps(doc).encode() for doc in docs] + [b"[]", b"not json", b'{"keys": [{}]}']
    return out


def config_texts():
    texts = []
    for name in sorted(os.listdir(os.path.join(ROOT, "config"))):
        if name.endswith(".toml"):
            with open(os.path.join(ROOT, "config", name)) as f:
                texts.append(f.read())
    sources = []
    for directory in ("tests", "tests/support", "src/config", "src"):
        path = os.path.join(ROOT, directory)
        if os.path.isdir(path):
            sources += [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".rs")]
    sources.append(os.path.join(FUZZ, "src", "lib.rs"))
    raw = re.compile(r'r(#+)"(.*?)"\1', re.S)
    plain = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
    markers = ("[server]", "[[issuer]]", "[[route]]", "[audit]", "[revocation]", "[[route.allow]]")
    for source in sources:
        with open(source) as f:
            code = f.read()
        for match in raw.finditer(code):
            text = match.group(2)
            if any(marker in text for marker in markers):
                texts.append(text)
        for match in plain.finditer(code):
            text = match.group(1)
            if any(marker in text for marker in markers) and "\\n" in text:
                try:
                    texts.append(text.encode().decode("unicode_escape"))
                except UnicodeDecodeError:
                    pass
    return texts


def main():
    if shutil.which("openssl") is None:
        sys.exit("make_seeds.py needs openssl")
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    values = tokens()
    for value in values:
        data = value.encode("utf-8", "surrogateescape") if "\xff" not in value else value.encode("latin-1")
        write("token", b"\x05" + data)
        write("token", b"\x45" + data)
        write("authorize", data)
        write("authorize", b"\x00\x00\x00\x00\x01" + data)
    for document in jwks_documents():
        write("jwks", b"\xff" + document)
        write("jwks", b"\x01" + document)
    for text in config_texts():
        write("config", text)
    for text in ["acme/*", "refs/tags/v*", "*", "**", "?", "a*b?c", "*.yml@refs/heads/main",
                 "acme/app/.github/workflows/release.yml@*", "prod(uction)?|staging-[0-9]+",
                 "\"refs/heads/main\"", "[\"a\", \"b*\"]", "{ regex = \"a.*\" }", "1", "true",
                 "[1, \"x\", { regex = \"[0-9]+\" }]", "caf\u00e9*", "*\u00e9?", "(?i)ACME"]:
        write("rules", text)
        write("rules", text + "\x00" + text)
    for text in ["acme/app", "refs/heads/main", "value\r\nx-injected: 1", "caf\u00e9", "deploy",
                 "https://github.com", "42\x007", "x-github-ref", "X_GitHub_Ref", "x-team"]:
        write("headers", text)
    for path in ["/", "/a/b/../c", "/a/./b", "/../../etc", "/a/b/..", "/a/.", "/..", "/a/..b/c",
                 "/v1/deploy", "/v1/deploy/../deploy/x", "/v1/%2e%2e/x", "/a%2fb", "/a%5cb",
                 "/a%00", "*", "//x/..//y", "/healthz/.", "/shadow/a?b=1"]:
        write("path", path)
        write("path", path + "\x01deploy.example:8443")
    counts = {t: len(os.listdir(os.path.join(SEEDS, t))) for t in sorted(os.listdir(SEEDS))}
    print(" ".join(f"{t}={n}" for t, n in counts.items()))


if __name__ == "__main__":
    main()
