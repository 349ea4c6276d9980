"""Ed25519 keys, C2SP signed notes (c2sp.org/signed-note) and tlog checkpoints
(c2sp.org/tlog-checkpoint), in the formats Go's golang.org/x/mod/sumdb/note reads:

- verifier key: ``<name>+<8 hex digits of key hash>+<base64(0x01 ‖ 32-byte public key)>``;
- signer key:   ``PRIVATE+KEY+<name>+<key hash>+<base64(0x01 ‖ 32-byte seed)>``;
- key hash: the first 4 bytes of ``SHA-256(<name> ‖ "\\n" ‖ 0x01 ‖ public key)``;
- a signed note: its text (ending in a newline), a blank line, then one line per signature,
  ``— <name> <base64(4-byte key hash ‖ 64-byte signature of the text)>``;
- a checkpoint's text: origin, tree size in decimal, base64 root hash, one a line.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from hashlib import sha256

ED25519 = b"\x01"
DASH = "\u2014"  # the em dash every signature line starts with


class NoteError(ValueError):
    """A key or note that is not well formed, or whose signature does not hold."""


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"a key name must be non-empty, without spaces or '+': {name!r}")
    return name


def key_hash(name: str, public: bytes) -> bytes:
    return sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


def _decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not base64") from None


@dataclass(frozen=True)
class Verifier:
    name: str
    public: bytes

    @property
    def hash(self) -> bytes:
        return key_hash(self.name, self.public)

    def text(self) -> str:
        return f"{self.name}+{self.hash.hex()}+{base64.b64encode(ED25519 + self.public).decode()}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)  # base64 holds '+' too
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<hash>+<key>")
        name, hashed, key = parts
        raw = _decode(key, "the verifier key")
        if len(raw) != 33 or raw[:1] != ED25519:
            raise NoteError("not an Ed25519 verifier key")
        found = cls(_check_name(name), raw[1:])
        if found.hash.hex() != hashed.lower():
            raise NoteError("the verifier key's hash does not match its name and key")
        return found

    def verifies(self, text: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, text)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes

    def _key(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def verifier(self) -> Verifier:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return Verifier(self.name, self._key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def text(self) -> str:
        return (f"PRIVATE+KEY+{self.name}+{self.verifier.hash.hex()}+"
                f"{base64.b64encode(ED25519 + self.seed).decode()}")

    @classmethod
    def generate(cls, name: str) -> Signer:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        seed = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(_check_name(name), seed)

    @classmethod
    def parse(cls, text: str) -> Signer:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signing key is PRIVATE+KEY+<name>+<hash>+<key>")
        raw = _decode(parts[4], "the signing key")
        if len(raw) != 33 or raw[:1] != ED25519:
            raise NoteError("not an Ed25519 signing key")
        found = cls(_check_name(parts[2]), raw[1:])
        if found.verifier.hash.hex() != parts[3].lower():
            raise NoteError("the signing key's hash does not match its name and key")
        return found

    def sign(self, text: str) -> str:
        """The signed note of ``text`` (which ends in a newline)."""
        signature = self._key().sign(text.encode())
        line = base64.b64encode(self.verifier.hash + signature).decode()
        return f"{text}\n{DASH} {self.name} {line}\n"


def open_note(note: str, verifiers: list[Verifier]) -> tuple[str, list[str]]:
    """The note's text, once one of its signatures is by one of ``verifiers`` and holds, and the
    names of the keys whose signatures held."""
    text, blank, signatures = note.rpartition("\n\n")
    if not blank or not signatures.endswith("\n"):
        raise NoteError("not a signed note: no blank line before its signatures, or no final newline")
    text += "\n"
    held = []
    for line in signatures[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteError(f"not a signature line: {line[:60]!r}")
        raw = _decode(parts[2], "a signature")
        if len(raw) != 4 + 64:
            raise NoteError("a signature is not 4 + 64 bytes")
        for verifier in verifiers:
            if verifier.name == parts[1] and verifier.hash == raw[:4] and verifier.verifies(text.encode(), raw[4:]):
                held.append(verifier.name)
    if not held:
        raise NoteError("it is not signed by the given key" + ("s" if len(verifiers) > 1 else "")
                        + " (a signature by another key, or one that does not hold)")
    return text, held


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or not lines[0] or not lines[1].isdigit() or (len(lines[1]) > 1 and lines[1][0] == "0"):
            raise NoteError("not a checkpoint: origin, tree size and root hash lines expected")
        root = _decode(lines[2], "the checkpoint's root hash")
        if len(root) != 32:
            raise NoteError("the checkpoint's root hash is not 32 bytes")
        return cls(lines[0], int(lines[1]), root)
