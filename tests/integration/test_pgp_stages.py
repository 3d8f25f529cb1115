"""The OpenPGP stages (engine/pgp.py) against the real GnuPG, both ways (issue 19, items 1, 3, 6).

Keys are generated here, in a GNUPGHOME of the test's own: Alice's secret key is passphrase-protected,
Bob's and Mallory's are not. What ``gpg`` encrypts the stages decrypt and what the stages encrypt ``gpg``
decrypts; tampered, truncated, unsigned and wrongly signed messages raise IntegrityError (exit 3); an early
close leaves no gpg process and no temporary home behind; 64 MiB go through with bounded memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from s3ferry.core.errors import AuthError, IntegrityError, TransferError, UsageError
from s3ferry.core.options import PgpOptions, TransferOptions
from s3ferry.core.secrets import Secret
from s3ferry.engine.pgp import PgpDecrypt, PgpEncrypt, pgp_stages
from s3ferry.engine.stages import Stage, chain, deterministic, renamed
from support.pgp import ALICE_PASSPHRASE, Keys, made_keys

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    with made_keys(tmp_path_factory.mktemp("pgp-keys")) as made:
        yield made


async def chunked(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def through(stages: list[Stage], data: bytes) -> bytes:
    async def run() -> bytes:
        return b"".join([chunk async for chunk in chain(stages, chunked(data))])
    return asyncio.run(run())


def alice_decrypt(keys: Keys, verify_with: list[Path] | None = None) -> PgpDecrypt:
    return PgpDecrypt(keys.file("alice.sec"), Secret(ALICE_PASSPHRASE), verify_with)


def homes() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("s3ferry-gpg-*")}


def gpg_processes() -> list[psutil.Process]:
    """Live gpg processes (gpg, gpg-agent) started for one of the stages' temporary homes."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "s3ferry-gpg-" in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


# --- both ways with gpg ------------------------------------------------------------------------------------------


def test_what_gpg_encrypts_decrypts_to_the_input(keys: Keys) -> None:
    data = os.urandom(3 * MiB + 17)
    before = homes()
    for armor in ([], ["--armor"]):
        encrypted = keys.gpg(*armor, "--recipient", "alice@example.com", "--encrypt", data=data)
        assert encrypted.returncode == 0, encrypted.stderr
        assert through([alice_decrypt(keys)], encrypted.stdout) == data
    assert homes() == before and not gpg_processes()  # keys only, and removed with the agent


def test_what_the_stage_encrypts_gpg_decrypts(keys: Keys) -> None:
    data = os.urandom(2 * MiB + 5)
    stage = PgpEncrypt([keys.file("bob.pub"), keys.file("alice.asc")], None, None)  # binary and armoured keys
    encrypted = through([stage], data)
    assert encrypted != data and not deterministic([stage])
    for who, passphrase in (("bob", ""), ("alice", ALICE_PASSPHRASE)):  # every recipient can read it
        home = keys  # the test keyring holds both secret keys; decrypt with each one's own key only
        decrypted = home.gpg("--try-secret-key", f"{who}@example.com", "--decrypt", data=encrypted,
                             passphrase=passphrase)
        assert decrypted.returncode == 0, decrypted.stderr
        assert decrypted.stdout == data


def test_signed_by_the_stage_verifies_in_gpg(keys: Keys) -> None:
    data = b"signed and sealed\n" * 10_000
    # Alice's key is passphrase-protected: the passphrase goes to gpg through a pipe
    stage = PgpEncrypt([keys.file("bob.pub")], keys.file("alice.sec"), Secret(ALICE_PASSPHRASE))
    decrypted = keys.gpg("--decrypt", data=through([stage], data))
    assert decrypted.returncode == 0, decrypted.stderr
    assert decrypted.stdout == data
    assert b"[GNUPG:] GOODSIG" in decrypted.stderr and b"alice@example.com" in decrypted.stderr


def test_signing_with_a_wrong_passphrase_is_an_auth_error(keys: Keys) -> None:
    stage = PgpEncrypt([keys.file("bob.pub")], keys.file("alice.sec"), Secret("not-the-passphrase"))
    with pytest.raises(AuthError, match="cannot sign with --sign-with"):
        through([stage], b"x" * 1000)
    assert not gpg_processes()


# --- signatures -----------------------------------------------------------------------------------------------------


def signed_by(keys: Keys, signer: str, data: bytes) -> bytes:
    made = keys.gpg("--recipient", "alice@example.com", "--local-user", f"{signer}@example.com", "--sign",
                    "--encrypt", data=data, passphrase=ALICE_PASSPHRASE if signer == "alice" else None)
    assert made.returncode == 0, made.stderr
    return made.stdout


def test_a_signature_by_the_wanted_key_verifies(keys: Keys) -> None:
    data = os.urandom(MiB)
    assert through([alice_decrypt(keys, [keys.file("bob.pub")])], signed_by(keys, "bob", data)) == data
    # without --verify-signature a signature nobody can check (no key for it) is no failure
    assert through([alice_decrypt(keys)], signed_by(keys, "mallory", data)) == data


def test_wrong_signer_and_no_signature_are_integrity_errors(keys: Keys) -> None:
    data = os.urandom(MiB)
    with pytest.raises(IntegrityError, match="signed by another key") as wrong:
        through([alice_decrypt(keys, [keys.file("bob.pub")])], signed_by(keys, "mallory", data))
    assert wrong.value.exit_code == 3
    unsigned = keys.gpg("--recipient", "alice@example.com", "--encrypt", data=data).stdout
    with pytest.raises(IntegrityError, match="not signed"):
        through([alice_decrypt(keys, [keys.file("bob.pub")])], unsigned)
    # signed by the secret key's own owner: still not a key the user named
    with pytest.raises(IntegrityError):
        through([alice_decrypt(keys, [keys.file("bob.pub")])], signed_by(keys, "alice", data))


# --- integrity ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [0.5, 0.999])
def test_a_flipped_byte_is_an_integrity_error(keys: Keys, where: float) -> None:
    encrypted = bytearray(keys.gpg("--recipient", "alice@example.com", "--encrypt", data=os.urandom(MiB)).stdout)
    encrypted[int(len(encrypted) * where)] ^= 0x01
    with pytest.raises(IntegrityError) as info:
        through([alice_decrypt(keys)], bytes(encrypted))
    assert info.value.exit_code == 3
    assert not gpg_processes()


def test_a_truncated_message_is_an_integrity_error(keys: Keys) -> None:
    encrypted = keys.gpg("--recipient", "alice@example.com", "--encrypt", data=os.urandom(MiB)).stdout
    for cut in (len(encrypted) // 2, len(encrypted) - 1):
        with pytest.raises(IntegrityError):
            through([alice_decrypt(keys)], encrypted[:cut])


def test_wrong_passphrase_wrong_key_and_not_a_key_are_user_errors(keys: Keys, tmp_path: Path) -> None:
    encrypted = keys.gpg("--recipient", "alice@example.com", "--encrypt", data=b"x" * 1000).stdout
    with pytest.raises(AuthError, match="wrong or missing passphrase"):
        through([PgpDecrypt(keys.file("alice.sec"), Secret("wrong-passphrase"), None)], encrypted)
    with pytest.raises(AuthError, match="wrong or missing passphrase"):
        through([PgpDecrypt(keys.file("alice.sec"), None, None)], encrypted)
    for not_alices in ("bob.sec", "alice.pub"):
        with pytest.raises(AuthError, match="not encrypted to a secret key in --pgp-key"):
            through([PgpDecrypt(keys.file(not_alices), None, None)], encrypted)
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key")
    with pytest.raises(UsageError, match="not an OpenPGP key file"):
        through([PgpDecrypt(junk, None, None)], encrypted)
    assert not gpg_processes()


# --- clean-up, errors of the source, memory -------------------------------------------------------------------------


def test_early_close_kills_gpg_and_removes_the_home(keys: Keys) -> None:
    encrypted = keys.gpg("--recipient", "alice@example.com", "--encrypt", data=os.urandom(8 * MiB)).stdout
    before = homes()

    async def first_chunk_only() -> None:
        out = alice_decrypt(keys).apply(chunked(encrypted))
        assert await anext(out)
        assert homes() - before and gpg_processes()  # it was running, with its home
        await out.aclose()  # type: ignore[attr-defined]  # an async generator, as apply's are

    asyncio.run(first_chunk_only())
    assert homes() == before
    assert not gpg_processes()
    assert not [c for c in psutil.Process().children(recursive=True) if "gpg" in c.name()]  # reaped too


def test_an_error_of_the_source_is_raised_as_it_was(keys: Keys) -> None:
    encrypted = keys.gpg("--recipient", "alice@example.com", "--encrypt", data=os.urandom(4 * MiB)).stdout

    async def failing() -> AsyncIterator[bytes]:
        yield encrypted[:MiB]
        raise TransferError("connection lost")

    async def run() -> None:
        async for _ in alice_decrypt(keys).apply(failing()):
            pass

    with pytest.raises(TransferError, match="connection lost"):
        asyncio.run(run())
    assert not gpg_processes()


def test_64_mib_through_decrypt_in_bounded_memory(keys: Keys, tmp_path: Path) -> None:
    size = 64 * MiB
    plain = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with plain.open("wb") as fh:
        for _ in range(size // (8 * MiB)):
            block = os.urandom(8 * MiB)
            digest.update(block)
            fh.write(block)
    encrypted = tmp_path / "big.bin.gpg"
    made = subprocess.run(["gpg", "--homedir", str(keys.home), "--batch", "--trust-model", "always",
                           "--recipient", "alice@example.com", "--compress-algo", "none", "--output", str(encrypted),
                           "--encrypt", str(plain)], capture_output=True, check=False)
    assert made.returncode == 0, made.stderr
    plain.unlink()
    me = psutil.Process()

    async def from_file() -> AsyncIterator[bytes]:
        with encrypted.open("rb") as fh:
            while block := await asyncio.to_thread(fh.read, MiB):
                yield block

    async def run() -> tuple[str, int]:
        out, peak = hashlib.sha256(), 0
        base = me.memory_info().rss
        async for chunk in alice_decrypt(keys).apply(from_file()):
            out.update(chunk)
            peak = max(peak, me.memory_info().rss - base)
        return out.hexdigest(), peak

    got, growth = asyncio.run(run())
    assert got == digest.hexdigest()
    assert growth < 24 * MiB, f"RSS grew by {growth / MiB:.1f} MiB for a 64 MiB message"


# --- names, determinism, the stages an option set asks for ---------------------------------------------------------


def test_names_and_determinism(keys: Keys) -> None:
    decrypt, encrypt = alice_decrypt(keys), PgpEncrypt([keys.file("bob.pub")], None, None)
    assert [decrypt.rename(n) for n in ("a.csv.gpg", "a.csv.PGP", "a.csv.asc", "a.csv", ".gpg")] == \
        ["a.csv", "a.csv", "a.csv", "a.csv", ".gpg"]
    assert encrypt.rename("a.csv") == "a.csv.gpg"
    assert renamed([decrypt, encrypt], "in.csv.pgp") == "in.csv.gpg"
    assert decrypt.deterministic and not encrypt.deterministic


def test_pgp_stages_from_the_options(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALICE_PP", ALICE_PASSPHRASE)
    options = TransferOptions(pgp=PgpOptions(decrypt=True, key_file=keys.file("alice.sec"), passphrase_env="ALICE_PP",
                                             verify_signature=(keys.file("bob.pub"),),
                                             encrypt_to=(keys.file("mallory.pub"),)))
    before, after = pgp_stages(options)
    assert [s.name for s in before] == ["pgp-decrypt"] and [s.name for s in after] == ["pgp-encrypt"]
    data = os.urandom(MiB)
    reencrypted = through([*before, *after], signed_by(keys, "bob", data))
    assert keys.gpg("--try-secret-key", "mallory@example.com", "--decrypt", data=reencrypted).stdout == data
    assert pgp_stages(TransferOptions()) == ([], [])
    with pytest.raises(UsageError, match="--decrypt needs the secret key"):
        pgp_stages(TransferOptions(pgp=PgpOptions(decrypt=True)))


def test_the_passphrase_from_a_command_never_shows_in_ps_or_gpgs_environment(keys: Keys, tmp_path: Path) -> None:
    script = tmp_path / "print-passphrase"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{ALICE_PASSPHRASE}'\n")
    script.chmod(0o700)
    options = TransferOptions(pgp=PgpOptions(decrypt=True, key_file=keys.file("alice.sec"),
                                             passphrase_command=str(script)))
    before, _ = pgp_stages(options)
    data = os.urandom(8 * MiB)
    encrypted = keys.gpg("--recipient", "alice@example.com", "--encrypt", data=data).stdout
    seen: list[str] = []

    async def run() -> bytes:
        out = []
        async for chunk in chain(before, chunked(encrypted)):
            out.append(chunk)
            if len(out) % 8 == 1:  # while gpg runs: every command line, and gpg's own environment
                seen.append(subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout)
                for proc in gpg_processes():
                    seen.append(" ".join(proc.cmdline()) + repr(proc.environ()))
        return b"".join(out)

    assert asyncio.run(run()) == data
    assert any("--passphrase-fd" in text for text in seen)  # gpg was seen, with the fd it reads
    for text in seen:
        assert ALICE_PASSPHRASE not in text
