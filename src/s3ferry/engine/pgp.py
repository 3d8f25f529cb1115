"""OpenPGP stages (issue 19): decrypt (and verify) or encrypt (and sign) a stream with GnuPG.

Why the ``gpg`` binary and not a Python library (README, *OpenPGP*): it is
what the other side of an OpenPGP exchange runs, Debian keeps it patched, and
it streams -- PGPy reads the whole message into memory, and pysequoia offers
whole-buffer calls only. ``gpg`` is driven through pipes:

* an ephemeral ``GNUPGHOME`` (``mkdtemp``, mode 0700) receives the keys and
  nothing else; the payload only ever passes through pipes. Its agent is
  stopped and the folder removed when the stream ends, however it ends;
* the passphrase goes through a pipe whose read end gpg inherits
  (``--passphrase-fd``), never through argv or the environment;
* gpg's status lines (``--status-fd``) decide, not its messages: gpg writes
  plaintext *before* it has checked the MDC, so a tampered or truncated
  message is only known at its end -- the stage then raises
  :class:`IntegrityError` (exit 3) and the engine publishes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from s3ferry.core.errors import AuthError, IntegrityError, S3FerryError, UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.core.redaction import printable, scrub
from s3ferry.core.secrets import Secret, SecretSource
from s3ferry.engine.stages import Stage

GPG = "/usr/bin/gpg"
GPGCONF = "/usr/bin/gpgconf"
#: bytes read from gpg's stdout at a time; the pipes hold at most ~64 KiB more each way (back-pressure)
CHUNK = 256 * 1024
#: the names an OpenPGP file goes by; decryption drops one of them
SUFFIXES = (".gpg", ".pgp", ".asc")
_STATUS = "[GNUPG:] "
#: status keywords that say a signature could not be checked (no key): not an error unless one is required
_UNCHECKED = frozenset({"ERRSIG", "NO_PUBKEY"})


@dataclass
class _Outcome:
    """What a gpg run said: its exit status, its status lines (keyword, args) and its last messages."""

    code: int | None = None
    status: list[tuple[str, list[str]]] = field(default_factory=list)
    messages: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=5))

    def has(self, keyword: str) -> bool:
        return any(kw == keyword for kw, _ in self.status)

    def args(self, keyword: str) -> list[list[str]]:
        return [args for kw, args in self.status if kw == keyword]

    def reason(self) -> str:
        """gpg's last message, scrubbed and made printable (it may quote names from the message)."""
        last = self.messages[-1] if self.messages else f"gpg exit status {self.code}"
        return printable(scrub(last.removeprefix("gpg: ")))


class _Home:
    """An ephemeral GNUPGHOME holding the imported keys only; :meth:`close` stops its agent and removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    async def create(cls) -> _Home:
        if not os.access(GPG, os.X_OK):
            raise UsageError(f"OpenPGP needs GnuPG: {GPG} not found (apt-get install gnupg)")
        return cls(Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="s3ferry-gpg-")))  # mode 0700

    def argv(self, *args: str) -> list[str]:
        return [GPG, "--homedir", str(self.path), "--batch", "--no-tty", "--no-greeting", "--status-fd", "2",
                "--trust-model", "always",  # the key files the user named are the trust
                "--no-auto-key-retrieve", "--pinentry-mode", "loopback", *args]

    async def import_keys(self, paths: Iterable[Path], what: str) -> set[str]:
        """The primary fingerprints of the keys in ``paths``, imported; ``what`` names the option in errors."""
        fingerprints: set[str] = set()
        for path in paths:
            outcome = await _run(self.argv("--import", str(path)), self)
            found = {args[1] for args in outcome.args("IMPORT_OK") if len(args) > 1}
            if outcome.code != 0 or not found:
                raise UsageError(f"{what} {path}: not an OpenPGP key file ({outcome.reason()})")
            fingerprints |= found
        return fingerprints

    async def close(self) -> None:
        # the agent gpg started for the secret key lives on its own: stop it before its folder goes
        # (gpgconf ships with gpg; without it there was no agent to stop)
        if os.access(GPGCONF, os.X_OK):
            stop = await asyncio.create_subprocess_exec(
                GPGCONF, "--homedir", str(self.path), "--kill", "all", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=_env(self))
            await stop.wait()
        await asyncio.to_thread(shutil.rmtree, self.path, ignore_errors=True)


def _env(home: _Home) -> dict[str, str]:
    """gpg's environment: nothing of ours (no secret ever goes through the environment), C messages."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home.path), "LC_ALL": "C"}


async def _run(argv: list[str], home: _Home) -> _Outcome:
    """A short gpg command (key import) to its end."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE, env=_env(home))
    outcome = _Outcome()
    assert proc.stderr is not None
    await _read_status(proc.stderr, outcome)
    outcome.code = await proc.wait()
    return outcome


async def _read_status(stream: asyncio.StreamReader, outcome: _Outcome) -> None:
    async for raw in stream:
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        if line.startswith(_STATUS):
            keyword, *args = line[len(_STATUS):].split(" ")
            if keyword != "KEY_CONSIDERED" and len(outcome.status) < 10_000:  # bounded whatever the message
                outcome.status.append((keyword, args))
        elif line.startswith("gpg: "):
            outcome.messages.append(line)


def _passphrase_fd(passphrase: Secret | None) -> tuple[list[str], list[int]]:
    """gpg's arguments and the fd to pass for ``passphrase``: a pipe, written and closed before gpg starts."""
    if passphrase is None:
        return [], []
    read, write = os.pipe()
    try:
        # a passphrase is far below a pipe's buffer: this write never blocks
        os.write(write, passphrase.reveal().encode() + b"\n")
    finally:
        os.close(write)
    return ["--passphrase-fd", str(read)], [read]


async def _pipe(argv: list[str], home: _Home, chunks: AsyncIterator[bytes], pass_fds: list[int],
                outcome: _Outcome) -> AsyncGenerator[bytes, None]:
    """``chunks`` through gpg: fed in a task while gpg's output is yielded; ``outcome`` filled at the end.

    Closing the iterator early kills and reaps gpg.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            pass_fds=pass_fds, env=_env(home), limit=CHUNK)
    finally:
        for fd in pass_fds:  # gpg has its own copy now
            os.close(fd)
    assert proc.stdout is not None and proc.stderr is not None
    feeder = asyncio.create_task(_feed(proc, chunks))
    status = asyncio.create_task(_read_status(proc.stderr, outcome))
    try:
        while data := await proc.stdout.read(CHUNK):
            yield data
        outcome.code = await proc.wait()
        if feeder.done() or outcome.code == 0:
            await feeder  # the source's own error, if it failed
        else:  # gpg gave up on its input (its status says why): the rest is not needed
            feeder.cancel()
        await status
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await _settle(feeder)
        await _settle(status)


async def _settle(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` if it still runs and wait for it; an error it had was already raised or superseded."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: the error that matters is the one propagating


async def _feed(proc: asyncio.subprocess.Process, chunks: AsyncIterator[bytes]) -> None:
    stdin = proc.stdin
    assert stdin is not None
    try:
        async for chunk in chunks:
            stdin.write(chunk)
            await stdin.drain()  # back-pressure: gpg reads as fast as its output is consumed
        stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        return  # gpg stopped reading; its status lines say why
    except BaseException:
        proc.kill()  # the source failed (or we were cancelled): gpg must not wait for input that never comes
        raise


#: a passphrase, or where to read it when the stage starts (a command may take seconds: read in a thread)
Passphrase = Secret | SecretSource | None


async def _resolved(passphrase: Passphrase) -> Secret | None:
    if isinstance(passphrase, SecretSource):
        return await asyncio.to_thread(passphrase.read, "the OpenPGP key passphrase")
    return passphrase


class PgpDecrypt(Stage):
    """Decrypt an OpenPGP message (binary or ASCII-armoured) with a secret key; optionally require a signature."""

    name = "pgp-decrypt"
    deterministic = True  # the same message decrypts to the same bytes: resume can re-derive its prefix

    def __init__(self, secret_key_file: Path, passphrase: Passphrase, verify_with: list[Path] | None) -> None:
        self.secret_key_file = secret_key_file
        self.passphrase = passphrase
        self.verify_with = verify_with

    def rename(self, name: str) -> str:
        for suffix in SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)]
        return name

    async def apply(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        home = await _Home.create()
        try:
            await home.import_keys([self.secret_key_file], "--pgp-key")
            signers = await home.import_keys(self.verify_with, "--verify-signature") if self.verify_with else None
            extra, fds = _passphrase_fd(await _resolved(self.passphrase))
            outcome = _Outcome()
            async with aclosing(_pipe(home.argv(*extra, "--decrypt"), home, chunks, fds, outcome)) as out:
                async for data in out:
                    yield data
            _judge_decryption(outcome, signers)
        finally:
            await home.close()


def _judge_decryption(outcome: _Outcome, signers: set[str] | None) -> None:
    """Raise unless gpg decrypted the whole message, its MDC held and (if asked) a wanted key signed it."""
    locked = outcome.has("NEED_PASSPHRASE") and not outcome.has("DECRYPTION_OKAY")  # none given
    if locked or outcome.has("BAD_PASSPHRASE") or any(a[:1] == ["pkdecrypt_failed"] for a in outcome.args("ERROR")):
        raise AuthError("OpenPGP: cannot unlock the secret key of --pgp-key: wrong or missing passphrase")
    if outcome.has("NO_SECKEY") and not outcome.has("DECRYPTION_KEY"):
        raise AuthError("OpenPGP: the message is not encrypted to a secret key in --pgp-key (is it the secret key, "
                        "not the public one?)")
    if outcome.has("BADMDC") or outcome.has("DECRYPTION_FAILED"):
        raise IntegrityError(f"OpenPGP integrity check failed: the message was tampered with or truncated "
                             f"({outcome.reason()})")
    if not (outcome.has("DECRYPTION_OKAY") and outcome.has("GOODMDC")):
        raise IntegrityError(f"OpenPGP: not a complete, integrity-protected encrypted message ({outcome.reason()})")
    if outcome.has("BADSIG"):
        raise IntegrityError("OpenPGP: bad signature: the message was altered after it was signed")
    if signers is not None:
        valid = {args[-1] for args in outcome.args("VALIDSIG") if args}  # the primary key's fingerprint
        if not valid & signers:
            what = "signed by another key" if outcome.has("ERRSIG") or valid else "not signed"
            raise IntegrityError(f"OpenPGP: the message is {what}, not by a key of --verify-signature")
    trouble = {kw for kw, _ in outcome.status if kw in ("ERRSIG", "NO_PUBKEY", "FAILURE", "ERROR")}
    # gpg's exit status 2 for a signature nobody asked to check is no failure; any other is
    if outcome.code != 0 and not (trouble and trouble <= _UNCHECKED):
        raise IntegrityError(f"OpenPGP decryption failed ({outcome.reason()})")


class PgpEncrypt(Stage):
    """Encrypt to every recipient's public key; optionally sign with a secret key first."""

    name = "pgp-encrypt"
    deterministic = False  # a fresh session key every run: a resumed transfer starts over

    def __init__(self, recipients: list[Path], sign_with: Path | None, passphrase: Passphrase) -> None:
        if not recipients:
            raise UsageError("--encrypt-to needs at least one recipient key file")
        self.recipients = recipients
        self.sign_with = sign_with
        self.passphrase = passphrase

    def rename(self, name: str) -> str:
        return f"{name}.gpg"

    async def apply(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        home = await _Home.create()
        try:
            args: list[str] = []
            for path in self.recipients:
                await home.import_keys([path], "--encrypt-to")  # a clear error for a file that holds no key
                args += ["--recipient-file", str(path)]
            fds: list[int] = []
            if self.sign_with is not None:
                signer = sorted(await home.import_keys([self.sign_with], "--sign-with"))
                extra, fds = _passphrase_fd(await _resolved(self.passphrase))
                args += [*extra, "--sign", *(a for fpr in signer for a in ("--local-user", fpr))]
            outcome = _Outcome()
            async with aclosing(_pipe(home.argv(*args, "--encrypt"), home, chunks, fds, outcome)) as out:
                async for data in out:
                    yield data
            _judge_encryption(outcome, signing=self.sign_with is not None)
        finally:
            await home.close()


def _judge_encryption(outcome: _Outcome, *, signing: bool) -> None:
    if outcome.has("INV_RECP"):
        raise UsageError(f"OpenPGP: a key of --encrypt-to cannot be encrypted to ({outcome.reason()})")
    if signing and (outcome.has("INV_SGNR") or outcome.has("BAD_PASSPHRASE")
                    or outcome.has("MISSING_PASSPHRASE") or not outcome.has("SIG_CREATED")):
        raise AuthError(f"OpenPGP: cannot sign with --sign-with: wrong or missing passphrase, or not a "
                        f"signing key ({outcome.reason()})")
    if outcome.code != 0 or not outcome.has("END_ENCRYPTION"):
        raise S3FerryError(f"OpenPGP encryption failed ({outcome.reason()})")


def pgp_stages(options: TransferOptions) -> tuple[list[Stage], list[Stage]]:
    """The OpenPGP stages a transfer runs: before the others (decrypt what is read) and after them (encrypt
    what is written). The passphrase is read when a stage starts (a command runs once per process)."""
    pgp = options.pgp
    pgp.check()
    if not pgp.any:
        return [], []
    source = SecretSource(pgp.passphrase_file, pgp.passphrase_env, pgp.passphrase_command)
    passphrase = source if source.given else None
    before: list[Stage] = []
    after: list[Stage] = []
    if pgp.decrypt:
        assert pgp.key_file is not None  # check() made sure
        before.append(PgpDecrypt(pgp.key_file, passphrase, list(pgp.verify_signature) or None))
    if pgp.encrypt_to:
        after.append(PgpEncrypt(list(pgp.encrypt_to), pgp.sign_with, passphrase))
    return before, after
