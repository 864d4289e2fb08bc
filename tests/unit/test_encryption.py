"""Client-side encryption: the chunked AES-256-GCM stream, its keys and what it refuses.

The format is pinned against an independent decryption written from docs/encryption.md's recipe
(cryptography's primitives, not Lifeboat's reader), and every way of damaging a stored artifact
the issue names (a flipped byte, chunks swapped, dropped or duplicated, a cut at a chunk boundary
or inside a chunk, bytes appended, the header edited, another key) is refused, without a byte of
an unauthenticated chunk being released.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lifeboat.contract import ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE, ENV_ENCRYPTION_KEY_SOURCE
from lifeboat.worker.compression import Compression, DecompressingReader, make_compressor
from lifeboat.worker.encryption import (
    HEADER_SIZE,
    MAX_CHUNK_SIZE,
    DecryptingReader,
    EncryptingCompressor,
    EncryptionKey,
    Encryptor,
    load_key,
)
from lifeboat.worker.errors import (
    DecryptionFailed,
    EncryptionKeyInvalid,
    EncryptionKeyMismatch,
    LifeboatError,
)

CHUNK = 64
SEALED = CHUNK + 16
KEY_TEXT = base64.b64encode(bytes(range(32))).decode()


def key(seed: int = 0) -> EncryptionKey:
    return EncryptionKey(hashlib.sha256(bytes([seed])).digest(), f"test key {seed}")


def seal(plaintext: bytes, k: EncryptionKey | None = None, chunk: int = CHUNK) -> bytes:
    encryptor = Encryptor(k or key(), chunk_size=chunk)
    out = bytearray()
    # Feed in uneven pieces, as compressed output arrives.
    for start in range(0, len(plaintext), 37):
        out += encryptor.update(plaintext[start : start + 37])
    out += encryptor.finish()
    return bytes(out)


def open_all(blob: bytes, k: EncryptionKey | None = None, read_size: int = 23) -> bytes:
    reader = DecryptingReader(io.BytesIO(blob), k or key(), "s3://b/x.enc")
    out = bytearray()
    while data := reader.read(read_size):
        out += data
    return bytes(out)


def chunks_of(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 7])
def test_round_trip_at_every_boundary(size: int) -> None:
    plaintext = os.urandom(size)
    blob = seal(plaintext)
    full_chunks = max(0, (size - 1) // CHUNK)
    assert len(blob) == HEADER_SIZE + size + 16 * (full_chunks + 1)
    for read_size in (1, 23, CHUNK, 10 * CHUNK, -1):
        assert open_all(blob, read_size=read_size) == plaintext


def test_the_format_is_the_documented_one() -> None:
    """Decrypt with nothing but cryptography and the recipe in docs/encryption.md."""
    master = key(7)
    plaintext = os.urandom(3 * CHUNK + 5)
    blob = seal(plaintext, master)
    header = blob[:HEADER_SIZE]
    magic, version, chunk, key_id, salt = struct.unpack(">8sBI16s32s", header)
    assert (magic, version, chunk, HEADER_SIZE) == (b"LBOATENC", 1, CHUNK, 61)
    raw_key = hashlib.sha256(bytes([7])).digest()
    assert key_id == hashlib.sha256(b"lifeboat encryption key id v1\x00" + raw_key).digest()[:16]
    assert key_id.hex() == master.key_id
    data_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"lifeboat artifact key v1"
    ).derive(raw_key)
    aead = AESGCM(data_key)
    _, sealed = chunks_of(blob)
    recovered = b"".join(
        aead.decrypt(i.to_bytes(11, "big") + bytes([i == len(sealed) - 1]), c, header)
        for i, c in enumerate(sealed)
    )
    assert recovered == plaintext


def test_every_artifact_has_its_own_salt_so_nonces_never_repeat_under_one_key() -> None:
    plaintext = b"same rows every night" * 10
    first, second = seal(plaintext), seal(plaintext)
    assert first[: HEADER_SIZE - 32] == second[: HEADER_SIZE - 32]  # magic, version, size, key id
    assert first[HEADER_SIZE - 32 : HEADER_SIZE] != second[HEADER_SIZE - 32 : HEADER_SIZE]
    assert first[HEADER_SIZE:] != second[HEADER_SIZE:]


def test_ciphertext_does_not_contain_the_plaintext_or_the_key() -> None:
    plaintext = b"customer alice@example.com card 4111111111111111\n" * 40
    blob = seal(plaintext, key(3))
    assert b"alice@example.com" not in blob
    assert hashlib.sha256(bytes([3])).digest() not in blob


Damage = Callable[[bytes], bytes]


def tamper_cases() -> list[tuple[str, Damage]]:
    def flip(at: int) -> Damage:
        def apply(blob: bytes) -> bytes:
            damaged = bytearray(blob)
            damaged[at % len(blob)] ^= 0x01
            return bytes(damaged)

        return apply

    def swap(blob: bytes) -> bytes:
        header, chunks = chunks_of(blob)
        chunks[0], chunks[1] = chunks[1], chunks[0]
        return header + b"".join(chunks)

    def drop_middle(blob: bytes) -> bytes:
        header, chunks = chunks_of(blob)
        return header + b"".join(chunks[:1] + chunks[2:])

    def duplicate(blob: bytes) -> bytes:
        header, chunks = chunks_of(blob)
        return header + b"".join(chunks[:2] + chunks[1:])

    def cut_at_boundary(blob: bytes) -> bytes:
        header, chunks = chunks_of(blob)
        return header + b"".join(chunks[:-1])

    def cut_inside(blob: bytes) -> bytes:
        return blob[: HEADER_SIZE + SEALED + 10]

    def append(blob: bytes) -> bytes:
        return blob + b"\x00" * 5

    def append_a_whole_chunk(blob: bytes) -> bytes:
        _, chunks = chunks_of(blob)
        return blob + chunks[0]

    def edit_chunk_size(blob: bytes) -> bytes:
        return blob[:9] + struct.pack(">I", CHUNK + 16) + blob[13:]

    def edit_salt(blob: bytes) -> bytes:
        return flip(HEADER_SIZE - 1)(blob)

    return [
        ("flipped byte in the first chunk", flip(HEADER_SIZE + 3)),
        ("flipped byte in a middle chunk", flip(HEADER_SIZE + SEALED + 5)),
        ("flipped byte in a tag", flip(HEADER_SIZE + SEALED - 1)),
        ("flipped byte in the last chunk", flip(-1)),
        ("swapped chunks", swap),
        ("dropped chunk", drop_middle),
        ("duplicated chunk", duplicate),
        ("cut at a chunk boundary", cut_at_boundary),
        ("cut inside a chunk", cut_inside),
        ("bytes appended", append),
        ("a whole chunk appended", append_a_whole_chunk),
        ("chunk size edited in the header", edit_chunk_size),
        ("salt edited in the header", edit_salt),
        ("magic edited", flip(0)),
        ("empty artifact", lambda blob: b""),
    ]


@pytest.mark.parametrize(("name", "damage"), tamper_cases(), ids=[c[0] for c in tamper_cases()])
def test_damage_is_refused_and_nothing_unauthenticated_is_released(
    name: str, damage: Damage
) -> None:
    plaintext = os.urandom(4 * CHUNK + 9)
    blob = seal(plaintext)
    reader = DecryptingReader(io.BytesIO(damage(blob)), key(), "s3://b/x.enc")
    released = bytearray()

    def read_all() -> None:
        while data := reader.read(CHUNK // 2):
            released.extend(data)

    with pytest.raises(DecryptionFailed) as refused:
        read_all()
    assert "s3://b/x.enc" in str(refused.value)
    assert refused.value.exit_code == 5
    # Only whole chunks that passed authentication came out, and they were the original ones.
    assert len(released) % CHUNK == 0
    assert plaintext.startswith(bytes(released))


def test_a_wrong_key_is_refused_by_its_id_before_any_chunk_is_read() -> None:
    blob = seal(os.urandom(10 * CHUNK), key(1))
    source = io.BytesIO(blob)
    reader = DecryptingReader(source, key(2), "s3://b/x.enc")
    with pytest.raises(EncryptionKeyMismatch) as refused:
        reader.prime()
    assert source.tell() == HEADER_SIZE
    message = str(refused.value)
    assert key(1).key_id in message
    assert key(2).key_id in message
    assert "test key 2" in message


def test_a_wrong_key_under_a_forged_key_id_fails_the_first_chunk() -> None:
    blob = seal(os.urandom(10 * CHUNK), key(1))
    forged = blob[:13] + key(2).key_id_bytes + blob[29:]
    source = io.BytesIO(forged)
    reader = DecryptingReader(source, key(2), "s3://b/x.enc")
    with pytest.raises(DecryptionFailed, match="chunk 0"):
        reader.prime()
    assert source.tell() <= HEADER_SIZE + SEALED + 1


def test_a_header_claiming_huge_chunks_is_refused_without_allocating_them() -> None:
    blob = bytearray(seal(b"x" * 10))
    blob[9:13] = struct.pack(">I", MAX_CHUNK_SIZE + 1)
    with pytest.raises(DecryptionFailed, match="never writes"):
        open_all(bytes(blob))


class Recording(io.BytesIO):
    largest = 0

    def read(self, n: int | None = -1, /) -> bytes:
        self.largest = max(self.largest, n if n is not None and n >= 0 else 1 << 62)
        return super().read(n)


def test_memory_is_bounded_by_the_chunk_size_whatever_the_length() -> None:
    k = key()
    encryptor = Encryptor(k, chunk_size=CHUNK)
    largest_output = 0
    sealed = bytearray(encryptor.update(b""))
    for _ in range(500):
        out = encryptor.update(os.urandom(CHUNK // 3))
        largest_output = max(largest_output, len(out))
        assert len(encryptor._buffer) <= CHUNK  # plaintext held back: less than a chunk
        sealed += out
    sealed += encryptor.finish()
    assert largest_output <= SEALED
    inner = Recording(bytes(sealed))
    reader = DecryptingReader(inner, k, "x")
    while reader.read(7):
        pass
    assert inner.largest <= SEALED + 1


def test_the_pipeline_step_compresses_then_encrypts_and_reads_back() -> None:
    dump = b"INSERT INTO orders VALUES (1, 'widget');\n" * 50_000
    step = EncryptingCompressor(make_compressor(Compression.ZSTD, threads=1), Encryptor(key()))
    stored = step.compress(dump[: len(dump) // 2]) + step.compress(dump[len(dump) // 2 :])
    stored += step.flush()
    assert stored.startswith(b"LBOATENC")
    assert len(stored) < len(dump) // 10  # compressed before it was encrypted
    reader = DecompressingReader(DecryptingReader(io.BytesIO(stored), key(), "x"), Compression.ZSTD)
    out = bytearray()
    while data := reader.read(100_000):
        out += data
    assert bytes(out) == dump


# -- keys ---------------------------------------------------------------------------------------


def test_a_key_is_32_bytes_in_base64_with_whitespace_ignored() -> None:
    parsed = EncryptionKey.parse(f"  {KEY_TEXT}\n", "$X")
    assert parsed.to_base64() == KEY_TEXT
    assert len(parsed.key_id) == 32
    assert parsed.key_id == EncryptionKey.parse(KEY_TEXT.encode(), "file").key_id


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        ("not base64 at all!", "is not valid base64"),
        (base64.b64encode(b"k" * 16).decode(), "decodes to 16 bytes, not 32"),
        (base64.b64encode(b"k" * 33).decode(), "decodes to 33 bytes, not 32"),
        (b"\xff\xfe binary", "is not base64 text"),
        ("hunter2hunter2hunter2hunter2abcd", "decodes to 24 bytes"),
    ],
)
def test_a_malformed_key_names_its_source_and_how_to_make_one_never_its_value(
    text: str | bytes, says: str
) -> None:
    with pytest.raises(EncryptionKeyInvalid) as refused:
        EncryptionKey.parse(text, "$LIFEBOAT_ENCRYPTION_KEY (Secret backup-key, key key)")
    message = str(refused.value)
    assert says in message
    assert "Secret backup-key, key key" in message
    assert "head -c 32 /dev/urandom | base64" in message
    shown = text.decode(errors="replace") if isinstance(text, bytes) else text
    if shown.strip():
        assert shown.strip() not in message
    assert refused.value.reason == "EncryptionKeyInvalid"
    assert refused.value.exit_code == 2


def test_repr_and_str_show_the_key_id_never_the_key() -> None:
    parsed = EncryptionKey.parse(KEY_TEXT, "$X")
    for shown in (repr(parsed), str(parsed), f"{parsed}", f"{[parsed]}"):
        assert parsed.key_id in shown
        assert KEY_TEXT not in shown
        assert bytes(range(32)).hex() not in shown
    assert not hasattr(parsed, "__dict__")  # nothing else to dump by accident


def test_key_sources_in_order_and_an_empty_variable_is_an_error(tmp_path: Path) -> None:
    other = base64.b64encode(b"o" * 32).decode()
    path = tmp_path / "key.b64"
    path.write_text(KEY_TEXT + "\n")
    assert load_key(None, {}) is None
    from_env = load_key(
        None, {ENV_ENCRYPTION_KEY: other, ENV_ENCRYPTION_KEY_SOURCE: "Secret k, key key"}
    )
    assert from_env is not None
    assert from_env.source.endswith("(Secret k, key key)")
    from_file_env = load_key(None, {ENV_ENCRYPTION_KEY_FILE: str(path), ENV_ENCRYPTION_KEY: other})
    assert from_file_env is not None
    assert from_file_env.to_base64() == KEY_TEXT
    from_option = load_key(str(path), {ENV_ENCRYPTION_KEY: other})
    assert from_option is not None
    assert from_option.source == f"--encryption-key-file {path}"
    with pytest.raises(EncryptionKeyInvalid, match=r"LIFEBOAT_ENCRYPTION_KEY is empty"):
        load_key(None, {ENV_ENCRYPTION_KEY: ""})
    with pytest.raises(EncryptionKeyInvalid, match="cannot read it"):
        load_key(str(tmp_path / "missing"), {})
    big = tmp_path / "big"
    big.write_bytes(b"A" * 10_000)
    with pytest.raises(EncryptionKeyInvalid, match="larger than a key file"):
        load_key(str(big), {})


def test_invalid_tag_never_escapes_as_itself() -> None:
    """The reader turns cryptography's InvalidTag into a LifeboatError the CLI reports in one
    line (an InvalidTag would be an 'Unexpected' error without a reason)."""
    blob = bytearray(seal(b"x" * 200))
    blob[-1] ^= 1
    with pytest.raises(LifeboatError) as refused:
        open_all(bytes(blob))
    assert not isinstance(refused.value, InvalidTag)
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__
