"""Client-side encryption at rest: AES-256-GCM in authenticated chunks, streamed in bounded memory.

A backup flows dump -> compress -> encrypt -> SHA-256 -> storage, and a restore reads it back the
other way, so what is stored (and what the manifest's size and SHA-256 describe) is ciphertext.

The stored form, version 1::

    header   "LBOATENC" (8) | version 1 (1) | chunk size (4, big-endian) | key id (16) | salt (32)
    chunk i  AES-256-GCM(plaintext i) and its 16-byte tag; every chunk holds `chunk size`
             plaintext bytes except the last, which holds 0 to `chunk size`

- Every artifact has its own AES key, HKDF-SHA256(master key, salt) with 32 random bytes of
  salt: nonces can never repeat across backups made with the same master key.
- The nonce of chunk i is i (11 bytes, big-endian) followed by one byte, 1 for the last chunk
  and 0 for the others (the STREAM construction); every chunk authenticates the whole header as
  associated data. So a changed byte fails its chunk, swapped chunks fail (their index is in the
  nonce), an artifact cut at a chunk boundary fails (its new last chunk was not sealed as the
  last), appended bytes fail, and an edited header fails every chunk.
- The key id is a fingerprint of the master key (the first 16 bytes of SHA-256 over a fixed
  label and the key), in the header and in the manifest: a wrong key is refused by its id before
  a byte is decrypted, and no plaintext is ever released before its chunk is authenticated.

The master key is 32 random bytes, given in base64 (`head -c 32 /dev/urandom | base64`): from a
Secret through `LIFEBOAT_ENCRYPTION_KEY`, or from a file. Its value never appears in a message,
a repr or a log line; errors name where it came from instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lifeboat.contract import (
    ENCRYPTION_ALGORITHM,
    ENV_ENCRYPTION_KEY,
    ENV_ENCRYPTION_KEY_FILE,
    ENV_ENCRYPTION_KEY_SOURCE,
)
from lifeboat.worker.compression import Compressor
from lifeboat.worker.errors import DecryptionFailed, EncryptionKeyInvalid, EncryptionKeyMismatch
from lifeboat.worker.streams import Readable

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENCRYPTION_ALGORITHM",
    "DecryptingReader",
    "EncryptingCompressor",
    "EncryptionKey",
    "Encryptor",
    "load_key",
]

KEY_BYTES: Final = 32
KEY_HINT: Final = "a key is 32 random bytes in base64, made with: head -c 32 /dev/urandom | base64"
MAGIC: Final = b"LBOATENC"
FORMAT_VERSION: Final = 1
SALT_BYTES: Final = 32
KEY_ID_BYTES: Final = 16
TAG_BYTES: Final = 16
DEFAULT_CHUNK_SIZE: Final = 1024 * 1024
MAX_CHUNK_SIZE: Final = 64 * 1024 * 1024
"""A header asking for larger chunks is refused: memory stays bounded whatever the artifact says."""
MAX_KEY_FILE_BYTES: Final = 4096
_HEADER = struct.Struct(">8sBI16s32s")
HEADER_SIZE: Final = _HEADER.size
_KEY_ID_LABEL = b"lifeboat encryption key id v1\x00"
_DATA_KEY_INFO = b"lifeboat artifact key v1"


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _cipher(data_key: bytes) -> AESGCM:
    # cryptography (OpenSSL) is imported when a key is used: ~8 MiB a backup without
    # encryption does not pay.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(data_key)


class EncryptionKey:
    """A master key and where it came from. Its repr and str show the key id, never the key."""

    __slots__ = ("_key", "source")

    def __init__(self, key: bytes, source: str) -> None:
        if len(key) != KEY_BYTES:
            raise EncryptionKeyInvalid(f"{source}: {len(key)} bytes; {KEY_HINT}")
        self._key = bytes(key)
        self.source = source
        """Where the key came from, for messages: an option, a variable, a Secret and key."""

    @classmethod
    def parse(cls, text: str | bytes, source: str) -> EncryptionKey:
        """The key from its base64 text (surrounding whitespace and line breaks are ignored)."""
        if isinstance(text, bytes):
            try:
                text = text.decode("ascii")
            except UnicodeDecodeError:
                raise EncryptionKeyInvalid(f"{source} is not base64 text; {KEY_HINT}") from None
        compact = "".join(text.split())
        if not compact:
            raise EncryptionKeyInvalid(f"{source} is empty; {KEY_HINT}")
        try:
            raw = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionKeyInvalid(f"{source} is not valid base64; {KEY_HINT}") from None
        if len(raw) != KEY_BYTES:
            raise EncryptionKeyInvalid(
                f"{source} decodes to {len(raw)} bytes, not {KEY_BYTES}; {KEY_HINT}"
            )
        return cls(raw, source)

    @classmethod
    def generate(cls, source: str = "a generated key") -> EncryptionKey:
        return cls(secrets.token_bytes(KEY_BYTES), source)

    @property
    def key_id_bytes(self) -> bytes:
        return hashlib.sha256(_KEY_ID_LABEL + self._key).digest()[:KEY_ID_BYTES]

    @property
    def key_id(self) -> str:
        """The key's fingerprint, 32 hex digits: safe to show, record and compare."""
        return self.key_id_bytes.hex()

    def to_base64(self) -> str:
        """The key in the form Secrets and key files hold it (for `lifeboat` key tooling)."""
        return base64.b64encode(self._key).decode("ascii")

    def data_key(self, salt: bytes) -> bytes:
        """The AES-256 key of one artifact: HKDF-SHA256 of the master key with its salt."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=_DATA_KEY_INFO)
        return hkdf.derive(self._key)

    def __repr__(self) -> str:
        return f"EncryptionKey(id={self.key_id}, source={self.source!r})"

    __str__ = __repr__


def load_key(path: str | None, environ: Mapping[str, str]) -> EncryptionKey | None:
    """The key from `path` (--encryption-key-file), else the file $LIFEBOAT_ENCRYPTION_KEY_FILE,
    else $LIFEBOAT_ENCRYPTION_KEY; None when none of them is set. A variable that is set but
    empty is an error, not "no encryption": an empty Secret must never mean a plaintext backup."""
    if path is not None:
        return _key_from_file(Path(path), f"--encryption-key-file {path}")
    if ENV_ENCRYPTION_KEY_FILE in environ:
        named = environ[ENV_ENCRYPTION_KEY_FILE]
        return _key_from_file(Path(named), f"${ENV_ENCRYPTION_KEY_FILE} ({named})")
    if ENV_ENCRYPTION_KEY in environ:
        described = environ.get(ENV_ENCRYPTION_KEY_SOURCE)
        source = f"${ENV_ENCRYPTION_KEY}" + (f" ({described})" if described else "")
        return EncryptionKey.parse(environ[ENV_ENCRYPTION_KEY], source)
    return None


def _key_from_file(path: Path, source: str) -> EncryptionKey:
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise EncryptionKeyInvalid(f"{source}: cannot read it ({exc.strerror})") from None
    if len(text) > MAX_KEY_FILE_BYTES:
        raise EncryptionKeyInvalid(f"{source} is larger than a key file can be; {KEY_HINT}")
    return EncryptionKey.parse(text, source)


class Encryptor:
    """Seals a byte stream in the chunked format: `update` returns what is sealed so far (the
    header first), `finish` the last chunk. Holds less than two chunks of plaintext."""

    def __init__(
        self, key: EncryptionKey, chunk_size: int = DEFAULT_CHUNK_SIZE, salt: bytes | None = None
    ) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be 1..{MAX_CHUNK_SIZE}, not {chunk_size}")
        salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
        self.key_id = key.key_id
        self.chunk_size = chunk_size
        self._header = _HEADER.pack(MAGIC, FORMAT_VERSION, chunk_size, key.key_id_bytes, salt)
        self._aead = _cipher(key.data_key(salt))
        self._buffer = bytearray()
        self._index = 0
        self._started = False
        self._finished = False

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise ValueError("the stream is already finished")
        out: list[bytes] = []
        if not self._started:
            out.append(self._header)
            self._started = True
        self._buffer += data
        # Strictly more than a chunk: the last chunk is only known at finish(). Chunks are
        # sealed from views of the buffer, without copies.
        sealed = 0
        with memoryview(self._buffer) as view:
            while len(view) - sealed > self.chunk_size:
                out.append(self._seal(view[sealed : sealed + self.chunk_size], final=False))
                sealed += self.chunk_size
        del self._buffer[:sealed]
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self) -> bytes:
        head = b"" if self._started else self._header
        self._started = True
        last = self._seal(self._buffer, final=True)
        self._buffer = bytearray()
        self._finished = True
        return head + last

    def _seal(self, plaintext: bytes | bytearray | memoryview, *, final: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._index, final), plaintext, self._header)
        self._index += 1
        return sealed


class EncryptingCompressor:
    """A `Compressor` whose output is encrypted: the pipeline's compress -> encrypt step."""

    def __init__(self, inner: Compressor, encryptor: Encryptor) -> None:
        self._inner = inner
        self._encryptor = encryptor

    def compress(self, data: bytes) -> bytes:
        return self._encryptor.update(self._inner.compress(data))

    def flush(self) -> bytes:
        return self._encryptor.update(self._inner.flush()) + self._encryptor.finish()


class DecryptingReader:
    """The plaintext of an encrypted artifact read from `inner`, one authenticated chunk at a time
    (it holds one sealed chunk, one byte of look-ahead and one plaintext chunk).

    Bytes are returned only from chunks that passed authentication. At the last chunk `inner`
    has been read to its end, so its own end-of-artifact check (size and SHA-256) has run too.
    `prime()` reads the header and opens the first chunk, so a wrong key or a damaged start fails
    before the caller does anything with the stream."""

    def __init__(self, inner: Readable, key: EncryptionKey, where: str) -> None:
        self._inner = inner
        self._key = key
        self._where = where
        self._aead: AESGCM | None = None
        self._header = b""
        self._chunk_size = 0
        self._index = 0
        self._carry = b""
        self._plain = memoryview(b"")
        self._done = False
        self.chunks = 0
        """Chunks authenticated so far."""

    def prime(self) -> None:
        if not self._plain and not self._done:
            self._open_next()

    def read(self, n: int = -1, /) -> bytes:
        while not self._plain:
            if self._done:
                return b""
            self._open_next()
        want = len(self._plain) if n is None or n < 0 else n
        out = bytes(self._plain[:want])
        self._plain = self._plain[want:]
        return out

    def _read_exact(self, n: int, start: bytes = b"") -> bytearray:
        """`start` and then bytes of `inner` up to `n` bytes in all: fewer only at its end."""
        buffer = bytearray(start)
        while len(buffer) < n:
            data = self._inner.read(n - len(buffer))
            if not data:
                break
            buffer += data
        return buffer

    def _read_header(self) -> None:
        raw = bytes(self._read_exact(HEADER_SIZE))
        if len(raw) < HEADER_SIZE or not raw.startswith(MAGIC):
            raise DecryptionFailed(
                f"{self._where} does not start with Lifeboat's encryption header: it is not an "
                "encrypted artifact, or its start was damaged; nothing was restored"
            )
        _, version, chunk_size, key_id, salt = _HEADER.unpack(raw)
        if version != FORMAT_VERSION:
            raise DecryptionFailed(
                f"{self._where} is encrypted in format version {version}; this Lifeboat reads "
                f"version {FORMAT_VERSION}: restore with a newer Lifeboat"
            )
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise DecryptionFailed(
                f"{self._where}: its header declares chunks of {chunk_size} bytes, which Lifeboat "
                "never writes: the header was damaged; nothing was restored"
            )
        if not secrets.compare_digest(key_id, self._key.key_id_bytes):
            raise EncryptionKeyMismatch(
                f"{self._where} was encrypted with key id {key_id.hex()}; the key from "
                f"{self._key.source} has key id {self._key.key_id}: give the key it was "
                "encrypted with; nothing was restored"
            )
        self._header = raw
        self._chunk_size = chunk_size
        self._aead = _cipher(self._key.data_key(salt))

    def _open_next(self) -> None:
        from cryptography.exceptions import InvalidTag

        if self._aead is None:
            self._read_header()
        assert self._aead is not None
        sealed_size = self._chunk_size + TAG_BYTES
        data = self._read_exact(sealed_size + 1, start=self._carry)
        final = len(data) <= sealed_size
        sealed = memoryview(data) if final else memoryview(data)[:sealed_size]
        self._carry = b"" if final else bytes(data[sealed_size:])
        offset = HEADER_SIZE + self._index * sealed_size
        if len(sealed) < TAG_BYTES:
            raise DecryptionFailed(
                f"{self._where} ends inside chunk {self._index} (byte {offset}): the artifact is "
                "truncated; nothing was restored"
            )
        try:
            plaintext = self._aead.decrypt(_nonce(self._index, final), sealed, self._header)
        except InvalidTag:
            what = (
                "the artifact was cut short, extended or changed"
                if final
                else "it was changed or moved, or the artifact was not sealed with this key"
            )
            raise DecryptionFailed(
                f"{self._where}: chunk {self._index} (byte {offset}"
                f"{', the last' if final else ''}) failed authentication: {what}; nothing "
                "was restored"
            ) from None
        self._index += 1
        self.chunks += 1
        self._plain = memoryview(plaintext)
        self._done = final
