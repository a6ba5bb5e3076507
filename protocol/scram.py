"""The CMS-to-node login (SCRAM-SHA-256) and the pairing credential built on it.

Shared by the agent and both CMS clients (the synchronous one and the async prober),
so the bytes each side computes cannot drift apart.

Login, two calls, the password never sent (RFC 5802/7677 through ``scramp``)::

    POST /auth/scram/start  {username, client_first}  -> {session, server_first}
    POST /auth/scram/finish {session, client_final}   -> {server_final, token, expires_in}

The agent keeps only a verifier (salt, iterations, StoredKey, ServerKey). The CMS
checks ``server_final``: a peer without the verifier cannot complete the exchange, and
what such a peer captures (a client proof bound to its own nonce) logs nobody in.

Pairing: ``/cms/enable`` hands the node a random pairing key, wrapped with AES-GCM under
a key derived (HKDF) from the node's ServerKey and serial, so only the node holding the
verifier unwraps it. With that key the CMS then proves what it issues:

* ``epoch_proof``: HMAC over (epoch, serial, action) for ``/takeover`` and ``/release``;
* ``request_signature``: HMAC over method, raw path, sha256 of the body, time, a nonce
  and the session token, sent as ``X-CMS-*`` headers on every change to a locked node.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from scramp import ScramClient, ScramException

MECHANISM = "SCRAM-SHA-256"
# A node announces its iteration count; one that asks for far more would make every CMS
# login burn seconds of CPU, one that asks for fewer weakens the verifier it keeps.
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 1_000_000
MAX_MESSAGE = 1024  # characters of one SCRAM message; real ones are ~100-250
PAIRING_KEY_BYTES = 32
# How far a signed request's time may be from the node's clock, in seconds.
SIGNATURE_WINDOW = 300.0
# Streamed bodies (upload chunks) are not hashed ahead: their content is fixed by the
# sha256 of the signed ``POST /uploads`` that created the upload.
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

HEADER_TIME = "X-CMS-Time"
HEADER_NONCE = "X-CMS-Nonce"
HEADER_SIGNATURE = "X-CMS-Signature"
HEADER_BODY = "X-CMS-Body-SHA256"


class ScramFailed(Exception):
    """The peer did not complete the exchange as the real node would."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """SCRAM's SaltedPassword: PBKDF2-HMAC-SHA256 (the same bytes as the agent's old
    password hash with that salt and count, which lets it migrate without the password)."""
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)


def verifier_keys(salted: bytes) -> tuple[bytes, bytes]:
    """``(StoredKey, ServerKey)`` from a SaltedPassword."""
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


@dataclass
class ScramLogin:
    """The CMS's side of one login: ``start()`` -> ``finish(answer)`` -> ``verify(answer)``.

    ``scramp`` writes and checks the messages; the proof is computed here from a cached
    SaltedPassword, so that logging in again to a node (tokens expire, nodes restart)
    does not pay PBKDF2's deliberate cost each time: a cold probe cycle over thousands
    of nodes pays it once per node."""

    username: str
    password: str = field(repr=False)
    _client: ScramClient = field(init=False, repr=False)
    salt: bytes = field(init=False, default=b"")
    iterations: int = field(init=False, default=0)
    _server_signature: bytes = field(init=False, default=b"", repr=False)
    # A SaltedPassword kept from an earlier login (see `load_salted`): used when the node
    # announces the same salt and count, else PBKDF2 runs as usual.
    known: tuple[bytes, int, bytes] | None = field(default=None, repr=False)
    used_known: bool = field(init=False, default=False)
    _salted_password: bytes = field(init=False, default=b"", repr=False)

    def __post_init__(self) -> None:
        # scramp writes and parses the messages; the password stays here (the proof is
        # computed below), taken as UTF-8 without SASLprep like the node's verifier.
        self._client = ScramClient([MECHANISM], self.username, "-")

    def start(self) -> dict[str, str]:
        return {"username": self.username, "client_first": self._client.get_client_first()}

    def finish(self, session: str, server_first: object) -> dict[str, str]:
        if not isinstance(server_first, str) or len(server_first) > MAX_MESSAGE:
            raise ScramFailed("the node's server_first is not a SCRAM message")
        try:
            self._client.set_server_first(server_first)
            salt, iterations = bytes(self._client.salt), int(self._client.iterations)
        except (ScramException, ValueError, TypeError, KeyError) as exc:
            raise ScramFailed(f"the node's server_first is not valid SCRAM ({exc})") from None
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise ScramFailed(
                f"the node asks for {iterations} iterations (accepted: {MIN_ITERATIONS}"
                f"-{MAX_ITERATIONS})"
            )
        self.salt, self.iterations = salt, iterations
        # RFC 5802 section 3, without channel binding ("n,," is "biws" in base64).
        without_proof = f"c=biws,r={self._client.nonce}"
        auth_message = ",".join(
            [str(self._client.client_first_bare), server_first, without_proof]
        ).encode("utf-8")
        if self.known is not None and self.known[:2] == (salt, iterations):
            salted, self.used_known = self.known[2], True
        else:
            salted, self.used_known = _salted(self.password, salt, iterations), False
        self._salted_password = salted
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self._server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return {"session": session, "client_final": f"{without_proof},p={b64(proof)}"}

    def verify(self, server_final: object) -> None:
        """Raise ScramFailed unless ``server_final`` proves the peer holds the verifier."""
        if not self._server_signature:
            raise ScramFailed("no SCRAM exchange yet")
        if not isinstance(server_final, str) or len(server_final) > MAX_MESSAGE:
            raise ScramFailed("the node's server_final is not a SCRAM message")
        expected = "v=" + b64(self._server_signature)
        if not hmac.compare_digest(server_final.encode(), expected.encode()):
            raise ScramFailed("the node did not prove it knows the password")

    def server_key(self) -> bytes:
        """The node's ServerKey, computed from the password and what SCRAM announced
        (after ``finish``): the secret the pairing key is wrapped under."""
        if not self.iterations:
            raise ScramFailed("no SCRAM exchange yet")
        return verifier_keys(_salted(self.password, self.salt, self.iterations))[1]

    def salted_blob(self) -> str:
        """What to keep for the next login to this node (after a verified exchange); a
        secret: store it encrypted, never log it."""
        if not self._salted_password:
            raise ScramFailed("no SCRAM exchange yet")
        return dump_salted(self.password, self.salt, self.iterations, self._salted_password)


def _password_check(password: str, salt: bytes) -> str:
    return hashlib.sha256(salt + b"\0" + password.encode("utf-8")).hexdigest()


def announced(server_first: object) -> tuple[bytes, int] | None:
    """The salt and iteration count a server_first announces, or None if it is not one
    (only to pick a kept SaltedPassword; ``ScramLogin.finish`` checks the message)."""
    if not isinstance(server_first, str) or len(server_first) > MAX_MESSAGE:
        return None
    parts = dict(p.split("=", 1) for p in server_first.split(",") if "=" in p)
    try:
        return unb64(parts["s"]), int(parts["i"])
    except (KeyError, ValueError):
        return None


def dump_salted(password: str, salt: bytes, iterations: int, salted: bytes) -> str:
    """A SaltedPassword with what it was computed from (RFC 5802 section 5.1 lets a
    client cache it per password, salt and count): the password only as a check."""
    return json.dumps(
        {"v": 1, "salt": b64(salt), "i": iterations, "check": _password_check(password, salt),
         "salted": b64(salted)}
    )  # fmt: skip


def load_salted(blob: str, password: str) -> tuple[bytes, int, bytes] | None:
    """(salt, iterations, SaltedPassword) from `dump_salted`, or None when there is none,
    it is unreadable, or it was computed from another password (the password changed)."""
    if not blob:
        return None
    try:
        data = json.loads(blob)
        salt, iterations, salted = unb64(data["salt"]), int(data["i"]), unb64(data["salted"])
        check = str(data["check"])
    except (ValueError, KeyError, TypeError):
        return None
    if len(salted) != 32 or not hmac.compare_digest(check, _password_check(password, salt)):
        return None
    return salt, iterations, salted


_salted_cache: dict[tuple[str, bytes, int], bytes] = {}
_salted_lock = threading.Lock()
_pbkdf2_runs = 0


def pbkdf2_runs() -> int:
    """How many SaltedPasswords this process has computed for logins (PBKDF2 runs)."""
    return _pbkdf2_runs


def _salted(password: str, salt: bytes, iterations: int) -> bytes:
    key = (hashlib.sha256(password.encode("utf-8")).hexdigest(), salt, iterations)
    with _salted_lock:
        cached = _salted_cache.get(key)
    if cached is None:
        cached = salted_password(password, salt, iterations)
        global _pbkdf2_runs
        with _salted_lock:
            _pbkdf2_runs += 1
            if len(_salted_cache) >= 100_000:  # a bound, far above any fleet's size
                _salted_cache.clear()
            _salted_cache[key] = cached
    return cached


def new_pairing_key() -> bytes:
    return secrets.token_bytes(PAIRING_KEY_BYTES)


def _wrapping_key(server_key: bytes, serial: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"cms-node pairing key v1|" + serial.encode("utf-8"),
    ).derive(server_key)


def wrap_pairing_key(pairing_key: bytes, server_key: bytes, serial: str) -> dict[str, str]:
    nonce = os.urandom(12)
    sealed = AESGCM(_wrapping_key(server_key, serial)).encrypt(
        nonce, pairing_key, serial.encode("utf-8")
    )
    return {"nonce": b64(nonce), "key": b64(sealed)}


def unwrap_pairing_key(wrapped: object, server_key: bytes, serial: str) -> bytes:
    """The pairing key, or ValueError when it was not wrapped for this node."""
    if not isinstance(wrapped, dict):
        raise ValueError("pairing must be an object {nonce, key}")
    nonce, sealed = wrapped.get("nonce"), wrapped.get("key")
    if not isinstance(nonce, str) or not isinstance(sealed, str) or len(sealed) > 256:
        raise ValueError("pairing.nonce and pairing.key must be base64 strings")
    try:
        key = AESGCM(_wrapping_key(server_key, serial)).decrypt(
            unb64(nonce), unb64(sealed), serial.encode("utf-8")
        )
    except (InvalidTag, ValueError) as exc:
        raise ValueError("the pairing key was not wrapped for this node") from exc
    if len(key) != PAIRING_KEY_BYTES:
        raise ValueError("the pairing key has the wrong length")
    return key


def epoch_proof(pairing_key: bytes, epoch: int, serial: str, action: str) -> str:
    message = f"cms-node epoch v1\n{action}\n{epoch}\n{serial}".encode()
    return hmac.new(pairing_key, message, hashlib.sha256).hexdigest()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_signature(
    pairing_key: bytes,
    method: str,
    raw_path: str,
    body_sha256: str,
    timestamp: str,
    nonce: str,
    token: str,
) -> str:
    message = "\n".join(
        [
            "cms-node request v1",
            method.upper(),
            raw_path,
            body_sha256,
            timestamp,
            nonce,
            hashlib.sha256(token.encode()).hexdigest(),
        ]
    ).encode()
    return hmac.new(pairing_key, message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
