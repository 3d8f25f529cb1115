"""Validated transfer options: one typed object behind the CLI and the API.

Memory
------
Payload bytes live only in part buffers. The engine keeps a fixed pool of

    buffers = max(2, max_memory // part_size)

buffers of ``part_size`` bytes each, so the payload held at any instant is at
most ``buffers * part_size`` plus the SFTP requests in flight. Read replies land
in the part buffers; how many are asked for per stream is sized from the round
trip measured at connect (at least ``sftp_window`` of ``sftp_block`` bytes, at
most 16 MiB). Writes to an SFTP server copy each request's block until it is
sent: at most ``4 * sftp_window * sftp_block`` (16 MiB) or, across a long round
trip, 3 MiB per SSH session (8 sessions: 24 MiB). With the defaults (8 MiB
parts, 32 MiB budget) that is 32 MiB + 16..24 MiB whatever the file size,
until a file is so large (> 78 GiB) that parts must grow to stay under S3's
10,000-part limit; the budget then still buys at least two buffers.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import math
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from s3ferry.core.errors import UsageError
from s3ferry.core.redaction import register_secret
from s3ferry.core.secrets import SecretSource, run_command
from s3ferry.core.units import human_bytes

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000

ChecksumName = Literal["crc32c", "crc64nvme", "sha256", "none"]
#: auto: continue a journaled attempt; resume: also adopt an upload found in S3;
#: force: discard earlier attempts; never: refuse if one exists, keep no journal.
ResumeMode = Literal["auto", "resume", "force", "never"]
OverwriteMode = Literal["changed", "never", "always"]
RESUME_MODES: tuple[str, ...] = ("auto", "resume", "force", "never")
CHECKSUMS: tuple[str, ...] = ("crc32c", "crc64nvme", "sha256", "none")

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``"16MiB"``, ``"16M"``, ``"1.5G"``, ``"4096"`` -> bytes (binary units, like rclone)."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise UsageError(f"cannot read {text!r} as a size (examples: 8MiB, 64M, 1G)")
    number, unit, _ = match.groups()
    power = " kmgt".index(unit.lower() or " ")
    return int(float(number) * (1024**power))


Pairs = tuple[tuple[str, str], ...]
#: user metadata travels as ``x-amz-meta-KEY`` headers: a key must be an HTTP header token
_HEADER_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
MAX_METADATA_BYTES = 2 * KiB  # S3: keys and values of the user metadata together, UTF-8
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 10, 128, 256
_TAG_PUNCTUATION = "_.:/=+-@"  # with letters, digits and spaces: S3's pattern [\p{L}\p{Z}\p{N}_.:/=+\-@]


#: --compress FORMAT[:LEVEL]: the formats and their levels (default level first)
COMPRESS_LEVELS: dict[str, tuple[int, range]] = {"gzip": (6, range(1, 10)), "zstd": (3, range(1, 23))}
DecompressName = Literal["auto", "gzip", "zstd"]
DECOMPRESS: tuple[DecompressName, ...] = ("auto", "gzip", "zstd")


def parse_compress(text: str) -> tuple[str, int]:
    """``gzip``, ``zstd:19`` -> (format, level); call :func:`compress_problem` first."""
    name, _, level = text.partition(":")
    return name, int(level) if level else COMPRESS_LEVELS[name][0]


def compress_problem(text: str) -> str | None:
    """What is wrong with a --compress value (None: nothing)."""
    name, colon, level = text.partition(":")
    if name not in COMPRESS_LEVELS:
        return f"takes gzip or zstd (optionally :LEVEL), not {text!r}"
    span = COMPRESS_LEVELS[name][1]
    if colon and (not level.isdigit() or int(level) not in span):
        return f"{name} takes a level from {span.start} to {span.stop - 1}, not {level!r}"
    return None


class OptionError(UsageError):
    """A bad value of one option, phrased so that each caller names the option as the user wrote it.

    ``target`` is the option's field (``part_size``, ``s3.metadata``); ``template`` holds ``{option}``
    where the name goes. ``str()`` uses the field's own name (the Python API); the command line says
    ``--part-size`` and the flows file ``part_size`` through :meth:`named`, from the option table
    (:mod:`s3ferry.core.optionspec`).
    """

    def __init__(self, target: str, template: str) -> None:
        self.target, self.template = target, template
        super().__init__(self.named(target.rpartition(".")[2]))

    def named(self, name: str) -> str:
        return self.template.replace("{option}", name)


def split_pairs(values: Sequence[str], flag: str) -> Pairs:
    """``KEY=VALUE`` strings (the repeatable ``--metadata`` / ``--tag``) as (key, value) pairs."""
    pairs = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes KEY=VALUE, not {value!r}")
        pairs.append((key.strip(), val))
    return tuple(pairs)


def check_metadata(pairs: Pairs) -> None:
    """S3's rules for user metadata (:class:`OptionError` names the option as the user gave it).

    Checked by :class:`S3Options`, so the CLI and the flows file refuse the
    same things before a transfer starts, not at the first upload.
    """
    def bad(problem: str) -> OptionError:
        return OptionError("s3.metadata", "{option} " + problem)

    seen: set[str] = set()
    for key, value in pairs:
        if not key:
            raise bad("key must not be empty")
        if not _HEADER_TOKEN.match(key):
            raise bad(f"key {key!r} cannot be an HTTP header name (x-amz-meta-KEY): use letters, "
                             "digits, - and _")
        if key.lower() in seen:  # S3 stores the keys in lower case: Owner and owner are one key
            raise bad(f"key {key!r} is given twice (S3 ignores the case of metadata keys)")
        seen.add(key.lower())
        if any(unicodedata.category(c) == "Cc" for c in value):
            raise bad(f"{key!r}: the value holds a control character (it travels in an HTTP header)")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in pairs)
    if size > MAX_METADATA_BYTES:
        raise bad(f"holds {size} bytes of keys and values; S3 allows 2KiB per object")


def check_tags(pairs: Pairs) -> None:
    """S3's rules for object tags (count, lengths, characters, the reserved ``aws:`` prefix)."""
    def bad(problem: str) -> OptionError:
        return OptionError("s3.tags", "{option} " + problem)

    if len(pairs) > MAX_TAGS:
        raise bad(f"holds {len(pairs)} tags; S3 allows at most {MAX_TAGS} per object")
    seen: set[str] = set()
    for key, value in pairs:
        if not key:
            raise bad("key must not be empty")
        if key in seen:
            raise bad(f"key {key!r} is given twice")
        seen.add(key)
        if len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise bad(f"{key!r}: S3 allows keys of up to {MAX_TAG_KEY} characters and values of up "
                             f"to {MAX_TAG_VALUE}")
        if key.lower().startswith("aws:"):
            raise bad(f"key {key!r}: the aws: prefix is reserved for AWS")
        wrong = "".join(sorted({c for c in key + value if not _tag_character(c)}))
        if wrong:
            raise bad(f"{key!r}: S3 allows letters, digits, spaces and {' '.join(_TAG_PUNCTUATION)} "
                             f"in tags, not {wrong!r}")


def _tag_character(c: str) -> bool:
    return unicodedata.category(c)[0] in "LZN" or c in _TAG_PUNCTUATION


@dataclass(frozen=True)
class SftpOptions:
    """How to reach SFTP servers; unset fields follow OpenSSH's defaults."""

    identity: tuple[Path, ...] = ()
    known_hosts: Path | None = None
    host_key: str | None = None
    password_file: Path | None = None
    connect_timeout: float = 30.0
    #: ``[user@]host[:port]`` of a jump host (like ``ssh -J``; ProxyJump in ~/.ssh/config also works)
    jump: str | None = None
    #: a command printing the password (``--password-command``), run without a shell
    password_command: str | None = None
    #: where the passphrase of an encrypted private key (``--identity``, IdentityFile) comes from
    passphrase_file: Path | None = None
    passphrase_env: str | None = None
    passphrase_command: str | None = None

    def __post_init__(self) -> None:
        if self.password_file is not None and self.password_command:
            raise UsageError("give the password one way: --password-file or --password-command")
        if sum(bool(v) for v in (self.passphrase_file, self.passphrase_env, self.passphrase_command)) > 1:
            raise UsageError("give the SSH key passphrase one way: --identity-passphrase-file, "
                             "--identity-passphrase-env or --identity-passphrase-command")

    def password(self) -> str | None:
        """The password from ``--password-file``, ``--password-command`` or ``S3FERRY_SFTP_PASSWORD``."""
        return read_secret(self.password_file, "S3FERRY_SFTP_PASSWORD", "sftp.password_file",
                           command=self.password_command)

    def passphrase(self) -> str | None:
        """The passphrase for encrypted SSH keys, or None (keys are then used only if not encrypted)."""
        source = SecretSource(self.passphrase_file, self.passphrase_env, self.passphrase_command)
        secret = source.read("the SSH key passphrase")
        return secret.reveal() if secret is not None else None


def read_secret(path: Path | None, env: str, target: str, *, required: bool = False,
                command: str | None = None) -> str | None:
    """A password from the file ``path`` (the option ``target``), else the output of ``command``
    (:mod:`s3ferry.core.secrets`), else the environment variable ``env`` (``required``: unset or empty is an
    error, as for a flow's ``password_env``); registered, so no output shows it (:mod:`s3ferry.core.redaction`).
    The only place s3ferry reads a password."""
    if path is None and command:
        return run_command(command, "--password-command")
    if path is not None:
        try:
            secret: str | None = path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise OptionError(target, f"cannot read {{option}} {path}: {exc.strerror}") from exc
        if not secret:  # else the login fails as a wrong password would, and the file is not suspected
            raise OptionError(target, f"{{option}} {path} is empty: it must hold the password")
    else:
        secret = os.environ.get(env) or None
        if required and not secret:
            raise UsageError(f"password_env {env} is not set (or empty)")
    if secret:
        register_secret(secret)
    return secret


@dataclass(frozen=True)
class FtpOptions:
    """How to reach FTP/FTPS servers.

    ``ftps://`` is explicit TLS (``AUTH TLS`` on the control connection, ``PROT P``
    for data); certificates are verified against the system store, or
    ``ca_file`` (``--ca-bundle``). Passive mode only: active mode needs the
    server to connect back, which firewalls and NAT break.
    """

    password_file: Path | None = None
    ca_file: Path | None = None
    connect_timeout: float = 30.0
    password_command: str | None = None

    def __post_init__(self) -> None:
        if self.password_file is not None and self.password_command:
            raise UsageError("give the password one way: --password-file or --password-command")

    def password(self) -> str | None:
        """``--password-file``, ``--password-command`` or ``S3FERRY_FTP_PASSWORD``; None means anonymous when no
        user is given."""
        return read_secret(self.password_file, "S3FERRY_FTP_PASSWORD", "ftp.password_file",
                           command=self.password_command)


@dataclass(frozen=True)
class PgpOptions:
    """OpenPGP stages (issue 19): decrypt (and verify) the source's bytes, encrypt (and sign) what is written.

    Key files are paths; the key's passphrase comes from a file, an environment variable or a command
    (:mod:`s3ferry.core.secrets`), never from the options themselves.
    """

    decrypt: bool = False
    key_file: Path | None = None
    passphrase_file: Path | None = None
    passphrase_env: str | None = None
    passphrase_command: str | None = None
    verify_signature: tuple[Path, ...] = ()
    encrypt_to: tuple[Path, ...] = ()
    sign_with: Path | None = None

    def check(self) -> None:
        """The combinations that cannot work (not in ``__post_init__``: a flows file checks keys one by one)."""
        if self.decrypt and self.key_file is None:
            raise UsageError("--decrypt needs the secret key: give --pgp-key")
        if self.verify_signature and not self.decrypt:
            raise UsageError("--verify-signature checks what --decrypt decrypts: give both")
        if self.sign_with is not None and not self.encrypt_to:
            raise UsageError("--sign-with signs what --encrypt-to encrypts: give both")
        if sum(bool(v) for v in (self.passphrase_file, self.passphrase_env, self.passphrase_command)) > 1:
            raise UsageError("give the OpenPGP key passphrase one way: --pgp-passphrase-file, --pgp-passphrase-env "
                             "or --pgp-passphrase-command")

    @property
    def any(self) -> bool:
        return self.decrypt or bool(self.encrypt_to)


@dataclass(frozen=True)
class HttpOptions:
    """How to reach HTTP(S) sources: certificates verified (system store or ``--ca-bundle``)."""

    ca_file: Path | None = None
    connect_timeout: float = 30.0
    read_timeout: float = 120.0


@functools.lru_cache(maxsize=8)
def _read_key(path: Path, target: str) -> bytes:
    """A 256-bit key from a file of 32 raw bytes or their base64 (cached: every request needs it).

    Registered as a secret before it is used: botocore's DEBUG output prints
    it (base64) and its MD5 in every request's headers.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OptionError(target, f"cannot read {{option}} {path}: {exc.strerror}") from exc
    if len(raw) == 32:
        register_secret(raw)
        return raw
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise OptionError(target, f"{{option}} {path} must hold a 256-bit key: 32 raw bytes or their base64")
    register_secret(key)
    register_secret(raw.strip().decode("ascii"))  # the file's own text: its base64 need not be the canonical one
    return key


@dataclass(frozen=True)
class S3Options:
    """Overrides of the AWS configuration chain (env vars, ~/.aws/config)."""

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    #: SHA-256 the request bodies into the signature. None (auto): only over
    #: plain http to a host that is not loopback -- over https TLS protects the
    #: bytes (botocore's own default) and on loopback there is no wire to
    #: tamper with; S3 verifies every part's CRC in any case.
    sign_payload: bool | None = None
    #: SSE-C: a file holding the 256-bit key (32 raw bytes, or their base64) for
    #: the destination / for an encrypted source. Keys are never logged.
    sse_c_key_file: Path | None = None
    source_sse_c_key_file: Path | None = None
    #: SSE-KMS key id / ARN / alias for the destination.
    sse_kms_key_id: str | None = None
    #: CA certificates for an S3 endpoint with a private CA (--ca-bundle, AWS_CA_BUNDLE).
    ca_file: Path | None = None
    #: object settings for what s3ferry creates (None: the bucket's default)
    storage_class: str | None = None
    content_type: str | None = None  # None: guessed from the key's extension
    acl: str | None = None
    metadata: Pairs = ()
    tags: Pairs = ()

    def __post_init__(self) -> None:
        check_metadata(self.metadata)
        check_tags(self.tags)

    def sse_c_key(self, *, source: bool = False) -> bytes | None:
        """The SSE-C key for the destination (or the source), read and checked once per process."""
        path = self.source_sse_c_key_file if source else self.sse_c_key_file
        if path is None:
            return None
        return _read_key(path, "s3.source_sse_c_key_file" if source else "s3.sse_c_key_file")

    def resolved_endpoint(self) -> str | None:
        return (self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL") or None)

    def can_stream_parts(self) -> bool:
        """Whether a part can be sent while it is still being read (its CRC as an
        HTTP trailer): not when the body's SHA-256 must be in the signature first."""
        signing = self.payload_signing()
        if signing is not None:
            return not signing
        endpoint = self.resolved_endpoint()
        return endpoint is None or endpoint.lower().startswith("https://")

    def payload_signing(self) -> bool | None:
        """True/False to force botocore's payload signing, None to leave botocore's default."""
        if self.sign_payload is not None:
            return self.sign_payload
        endpoint = self.resolved_endpoint()
        if endpoint is None or not endpoint.lower().startswith("http://"):
            return None  # AWS or https: botocore already skips it for uploads that carry a checksum
        host = (urlsplit(endpoint).hostname or "").lower()
        return False if _is_loopback(host) else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress  # only for plain-http endpoints: not worth a share of every start

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TransferOptions:
    """Everything that shapes one transfer. See the module docstring for memory."""

    part_size: int = 8 * MiB
    read_streams: int = 2
    upload_streams: int = 4
    max_memory: int = 32 * MiB
    checksum: ChecksumName = "crc32c"
    sftp_block: int = 256 * KiB
    sftp_window: int = 16
    retries: int = 5
    #: S3 -> S3: objects up to this size are one CopyObject, larger ones are
    #: copied by S3 in parts of this size (UploadPartCopy), upload_streams at a time
    copy_part_size: int = 256 * MiB
    #: bytes per second for the whole process (None: no limit)
    bwlimit: int | None = None
    #: an existing destination: "changed" copies only if it differs (size, then checksum or
    #: mtime), "never" leaves it (--no-clobber), "always" replaces it (--overwrite)
    overwrite: OverwriteMode = "changed"
    #: decide and report, change nothing
    dry_run: bool = False
    resume: ResumeMode = "auto"
    #: refuse (exit 3) a copy that cannot be verified against an independent check, instead of
    #: completing it with "not verified" (on for pull and push)
    require_verified: bool = False
    state_dir: Path | None = None
    #: the audit trail's log: None is ``<state dir>/audit.jsonl``, ``"off"`` records nothing
    audit_log: str | None = None
    #: transforms in flight (issue 19, :mod:`s3ferry.engine.transformed`): compress the output as
    #: "gzip" or "zstd", optionally ":LEVEL"; decompress the input ("auto": gzip or zstd by magic bytes)
    compress: str | None = None
    decompress: DecompressName | None = None
    #: keep the destination's name as the source's (no .gz/.zst added or removed)
    keep_name: bool = False
    sftp: SftpOptions = field(default_factory=SftpOptions)
    s3: S3Options = field(default_factory=S3Options)
    ftp: FtpOptions = field(default_factory=FtpOptions)
    http: HttpOptions = field(default_factory=HttpOptions)
    pgp: PgpOptions = field(default_factory=PgpOptions)

    def __post_init__(self) -> None:
        def bad(target: str, problem: str) -> OptionError:
            return OptionError(target, "{option} " + problem)

        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise bad("part_size", f"must be between 5MiB and 5GiB, not {self.part_size} bytes")
        for name, value in (("read_streams", self.read_streams), ("upload_streams", self.upload_streams),
                            ("sftp_window", self.sftp_window)):
            if not 1 <= value <= 256:
                raise bad(name, f"must be between 1 and 256, not {value}")
        if self.max_memory < MIN_PART_SIZE:
            raise bad("max_memory", "must be at least 5MiB")
        if not 4 * KiB <= self.sftp_block <= 4 * MiB:
            raise bad("sftp_block", "must be between 4KiB and 4MiB")
        if not MIN_PART_SIZE <= self.copy_part_size <= MAX_PART_SIZE:
            raise bad("copy_part_size", "must be between 5MiB and 5GiB")
        if self.bwlimit is not None and self.bwlimit < 1024:
            raise bad("bwlimit", f"must be at least 1KiB per second, not {self.bwlimit}")
        if self.audit_log is not None and not self.audit_log.strip():
            raise bad("audit_log", "must be a file path or 'off', not empty")
        if not 0 <= self.retries <= 100:
            raise bad("retries", f"must be between 0 and 100, not {self.retries}")
        if self.resume not in RESUME_MODES:
            raise bad("resume", f"must be one of {', '.join(RESUME_MODES)}, not {self.resume!r}")
        if self.overwrite not in ("changed", "never", "always"):
            raise bad("overwrite", f"must be changed, never or always, not {self.overwrite!r}")
        if self.checksum not in CHECKSUMS:
            raise bad("checksum", f"must be one of {', '.join(CHECKSUMS)}, not {self.checksum!r}")
        if self.compress is not None:
            problem = compress_problem(self.compress)
            if problem:
                raise bad("compress", problem)
        if self.decompress is not None and self.decompress not in DECOMPRESS:
            raise bad("decompress", f"must be one of {', '.join(DECOMPRESS)}, not {self.decompress!r}")

    def replace(self, **changes: object) -> TransferOptions:
        """A copy with some fields changed; unknown names raise :class:`UsageError`."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UsageError(f"unknown option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def part_size_for(self, size: int) -> int:
        """The part size for a file of ``size`` bytes: grown to fit in 10,000 parts (MiB-aligned)."""
        needed = math.ceil(size / MAX_PARTS)
        if needed <= self.part_size:
            return self.part_size
        return min(MAX_PART_SIZE, math.ceil(needed / MiB) * MiB)

    def file_part_size(self) -> tuple[int, str | None]:
        """The part size for a file destination (a local file, SFTP), and why it is not ``part_size`` if not.

        A file has no part-count limit, so parts are the size asked for, as long as two of them (the fewest
        buffers a copy runs with: a file destination's parts are held whole) fit ``max_memory``; else the
        largest that do.
        """
        fits = max(MIN_PART_SIZE, self.max_memory // 2)
        if self.part_size <= fits:
            return self.part_size, None
        return fits, (f"parts of {human_bytes(fits)}, not {human_bytes(self.part_size)}: a file destination "
                      f"holds two whole parts in memory at least, and --max-memory is {human_bytes(self.max_memory)} "
                      f"(raise it to {human_bytes(2 * self.part_size)} for {human_bytes(self.part_size)} parts)")

    def buffer_count(self, part_size: int) -> int:
        """How many part buffers the byte budget pays for (at least two)."""
        return max(2, self.max_memory // part_size)
