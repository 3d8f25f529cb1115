"""The option table: every option of every command, declared once.

Each :class:`Option` says how it is spelled on the command line, its type,
default and help, which commands offer it, whether a flows file takes it (and
for which kind of flow), whether a named endpoint of the config file may carry
it, its environment variable, and which :class:`TransferOptions` field(s) it
sets. From it come the click options of every command (:mod:`s3ferry.cli.flags`),
the keys of a flows file (:mod:`s3ferry.jobs.flowfile`), the endpoint keys of
the config file (:mod:`s3ferry.operations.settings`), and :func:`build_transfer_options`,
which all of them use to make the typed options. No click here: core does no I/O
and the table is plain data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from s3ferry.core.errors import UsageError
from s3ferry.core.options import (
    CHECKSUMS,
    DECOMPRESS,
    FtpOptions,
    HttpOptions,
    OptionError,
    PgpOptions,
    S3Options,
    SftpOptions,
    TransferOptions,
)

#: how a value is read: ``size`` ("16MiB"), ``count`` (-vv), ``flag`` (present or not), ``switch``
#: (--x/--no-x), ``pairs`` (repeatable KEY=VALUE), ``age`` ("60s" or seconds); ``path`` may be a folder,
#: ``file`` may not
Kind = Literal["text", "int", "float", "size", "path", "file", "choice", "flag", "switch", "count", "pairs",
               "age"]

CP, PULL, PUSH, RUN, DOCTOR, UPLOADS, CANCEL, DEMO = "cp", "pull", "push", "run", "doctor", "uploads", "cancel", "demo"
STATUS, HISTORY, VERIFY, SERVE = "status", "history", "verify", "serve"
AUDIT = "audit"  # a group: its subcommands' own options (--log, filters) are not endpoint or transfer options
COMMANDS = (CP, VERIFY, PULL, PUSH, RUN, SERVE, STATUS, HISTORY, DOCTOR, UPLOADS, CANCEL, DEMO, AUDIT)
JOBS = frozenset({PULL, PUSH})
TRANSFERS = frozenset({CP, PULL, PUSH})  # the commands that copy files
#: every command that does work against an endpoint: they share the output options
WORKERS = frozenset({CP, VERIFY, PULL, PUSH, RUN, SERVE, DOCTOR, UPLOADS, CANCEL})
TO_SFTP = frozenset({CP, VERIFY, PULL, PUSH, DOCTOR})  # SFTP (and FTP/HTTP) endpoints
TO_S3 = frozenset({CP, VERIFY, PULL, PUSH, DOCTOR, UPLOADS, CANCEL})
#: the options of the engine's reads that ``verify`` uses too (it reads both sides, writes nothing)
READS = TRANSFERS | {VERIFY}
#: commands that write S3 objects (push reads S3 and writes files)
WRITES_S3 = frozenset({CP, PULL})
FLOW_KINDS = ("pull", "push")
#: the commands that read what the jobs recorded in the journal
READERS = frozenset({STATUS, HISTORY})


@dataclass(frozen=True)
class Variant:
    """What differs for one command: its help (and default) for the same option."""

    help: str | None = None
    default: Any = None


@dataclass(frozen=True)
class Option:
    name: str  #: the key of a flows file and of the config file, and the CLI parameter's name
    flags: tuple[str, ...]  #: command-line spellings; a ``switch`` also has ``--no-`` + its long flag
    help: str
    commands: frozenset[str]
    kind: Kind = "text"
    default: Any = None
    show_default: bool | str = False
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    multiple: bool = False  #: repeatable: every value given is kept
    envvar: str | None = None
    #: several flags setting one parameter (``--resume``/``--force``/``--no-resume`` set ``resume_mode``)
    dest: str | None = None
    flag_value: str | None = None
    #: the key in a flows file (None: not there) and the kinds of flow that take it
    flows_key: str | None = None
    flows_kinds: tuple[str, ...] = FLOW_KINDS
    #: a named endpoint of the config file may carry it
    endpoint: bool = False
    #: the TransferOptions fields it sets (``part_size``, ``s3.region``)
    targets: tuple[str, ...] = ()
    variants: Mapping[str, Variant] = field(default_factory=dict)

    @property
    def param(self) -> str:
        """The name of the value a command receives (click's parameter name)."""
        return self.dest or self.name

    @property
    def flag(self) -> str:
        """The long flag, as errors name the option on the command line."""
        return next(f for f in self.flags if f.startswith("--"))

    def help_for(self, command: str) -> str:
        variant = self.variants.get(command)
        return variant.help if variant is not None and variant.help is not None else self.help

    def default_for(self, command: str) -> Any:
        variant = self.variants.get(command)
        return variant.default if variant is not None and variant.default is not None else self.default


_D = TransferOptions()


def _o(name: str, *flags: str, help: str, commands: frozenset[str], **more: Any) -> Option:
    return Option(name, flags, help, commands, **more)


def _flows(key: str, *kinds: str) -> dict[str, Any]:
    return {"flows_key": key, "flows_kinds": kinds or FLOW_KINDS}


OUTPUT = (
    _o("verbose", "-v", "--verbose", kind="count", commands=WORKERS, default=0,
       help="More notes: -v retries and decisions, -vv debug."),
    _o("quiet", "-q", "--quiet", kind="flag", commands=WORKERS,
       help="Nothing on success: only errors, and results asked for as data (--json)."),
    _o("log_format", "--log-format", kind="choice", choices=("text", "json"), default="text", show_default=True,
       commands=WORKERS, help="stderr notes as readable lines or as JSON lines."),
    _o("metrics_port", "--metrics-port", kind="int", metavar="PORT", commands=TRANSFERS | {RUN},
       help="Serve Prometheus metrics on http://ADDR:PORT/metrics while the command runs."),
    _o("metrics_addr", "--metrics-addr", default="127.0.0.1", show_default=True, commands=TRANSFERS | {RUN},
       help="Address for --metrics-port (0.0.0.0 to let another host scrape)."),
    _o("pushgateway", "--pushgateway", metavar="URL", commands=TRANSFERS | {RUN},
       help="Push metrics to this Prometheus Pushgateway at the end."),
    _o("push_interval", "--push-interval", kind="float", default=30.0, show_default=True, metavar="SECONDS",
       commands=TRANSFERS | {RUN},
       help="With --pushgateway: also push every SECONDS during the command (0: only at the end)."),
    _o("no_progress", "--no-progress", kind="flag", commands=TRANSFERS,
       help="No progress bar (also off when stderr is not a terminal)."),
    _o("json", "--json", kind="flag", dest="as_json", commands=WORKERS | READERS,
       help="Print the result as one JSON object.",
       variants={PULL: Variant("Print the report as one JSON object."),
                 PUSH: Variant("Print the report as one JSON object."),
                 RUN: Variant('One JSON object per run (with "flow": NAME).'),
                 SERVE: Variant('One JSON object per run (with "flow": NAME), as run --json.'),
                 DOCTOR: Variant("One JSON object per check."),
                 VERIFY: Variant("One JSON object per file compared (with -r, then a summary object)."),
                 UPLOADS: Variant("One JSON object per upload."),
                 CANCEL: Variant("One JSON object per aborted upload."),
                 STATUS: Variant("One JSON object per flow."),
                 HISTORY: Variant("One JSON object per file copied or failed.")}),
    _o("debug", "--debug", kind="flag", commands=WORKERS | READERS, help="Show tracebacks and debug logs."),
)

ENGINE = (
    _o("part_size", "--part-size", kind="size", default=_D.part_size, show_default="8MiB", commands=READS,
       targets=("part_size",), **_flows("part_size"),
       help="Bytes per part (grown automatically to stay within 10,000 parts).",
       variants={VERIFY: Variant("Bytes per ranged read; also the first part size tried for a multipart ETag "
                                 "whose part sizes S3 does not report.")}),
    _o("read_streams", "--read-streams", kind="int", default=_D.read_streams, show_default=True, commands=READS,
       targets=("read_streams",), **_flows("read_streams"), help="Parallel reads from the source.",
       variants={VERIFY: Variant("Parallel reads of each file streamed.")}),
    _o("upload_streams", "--upload-streams", kind="int", default=_D.upload_streams, show_default=True,
       commands=TRANSFERS, targets=("upload_streams",), **_flows("upload_streams"), help="Parallel part uploads."),
    _o("max_memory", "--max-memory", kind="size", default=_D.max_memory, show_default="32MiB", commands=TRANSFERS,
       targets=("max_memory",), **_flows("max_memory"), help="Byte budget for payload buffers."),
    _o("checksum", "--checksum", kind="choice", choices=CHECKSUMS, default=_D.checksum, show_default=True,
       commands=TRANSFERS, targets=("checksum",), **_flows("checksum"),
       help="Checksum verified per part by S3 and on the whole object."),
    _o("resume", "--resume", kind="flag", dest="resume_mode", flag_value="resume", commands=TRANSFERS,
       targets=("resume",),
       help="Continue an earlier attempt; without a journal, adopt an upload found in S3 (parts verified)."),
    _o("force", "--force", kind="flag", dest="resume_mode", flag_value="force", commands=TRANSFERS,
       targets=("resume",), help="Discard any earlier attempt and start clean."),
    _o("no_resume", "--no-resume", kind="flag", dest="resume_mode", flag_value="never", commands=TRANSFERS,
       targets=("resume",),
       help="Refuse to run if an earlier attempt exists; keep no journal, leave nothing behind on failure."),
    _o("bwlimit", "--bwlimit", kind="size", metavar="RATE", commands=READS, targets=("bwlimit",),
       **_flows("bwlimit"),
       help="Bytes per second for the whole process, shared by all streams (e.g. 50M = 50 MiB/s)."),
    _o("retries", "--retries", kind="int", default=_D.retries, show_default=True, commands=READS,
       targets=("retries",), **_flows("retries"),
       help="Retries per part and per request for errors that may pass (5xx, SlowDown, lost connection)."),
    _o("copy_part_size", "--copy-part-size", kind="size", default=_D.copy_part_size, show_default="256MiB",
       commands=frozenset({CP}), targets=("copy_part_size",),
       help="S3 to S3: larger objects are copied by S3 in parts of this size."),
)

TREES = (
    _o("recursive", "--recursive", "-r", kind="flag", commands=frozenset({CP, VERIFY}),
       help="Copy every file below the SRC folder or prefix.",
       variants={VERIFY: Variant("Compare every file below the SRC folder or prefix with DST's.")}),
    _o("include", "--include", kind="text", multiple=True, metavar="GLOB", commands=READS, **_flows("include"),
       help="Only paths matching GLOB (repeatable).",
       variants={CP: Variant("With -r: copy paths matching GLOB (repeatable)."),
                 VERIFY: Variant("With -r: compare paths matching GLOB (repeatable).")}),
    _o("exclude", "--exclude", kind="text", multiple=True, metavar="GLOB", commands=READS, **_flows("exclude"),
       help="Skip paths matching GLOB (repeatable).",
       variants={CP: Variant("With -r: skip paths matching GLOB (repeatable)."),
                 VERIFY: Variant("With -r: skip paths matching GLOB (repeatable), on both sides.")}),
    _o("transfers", "--transfers", kind="int", default=4, show_default=True, commands=READS,
       **_flows("transfers"), help="Large files copied at a time (small ones: up to 8x as many, within --max-memory).",
       variants={CP: Variant("With -r: large files copied at a time (small ones: up to 8x as many, within "
                             "--max-memory)."),
                 VERIFY: Variant("With -r: files compared at a time.")}),
    _o("executor", "--executor", kind="choice", choices=("local", "dask"), default="local", show_default=True,
       commands=TRANSFERS, help="Where the work runs: here, or on a Dask cluster (docs/distributed.md)."),
    _o("scheduler", "--scheduler", envvar="S3FERRY_DASK_SCHEDULER", metavar="tcp://HOST:8786", commands=TRANSFERS,
       help="The Dask scheduler for --executor dask (or S3FERRY_DASK_SCHEDULER)."),
    _o("state_dir", "--state-dir", kind="path", envvar="S3FERRY_STATE_DIR",
       commands=TRANSFERS | READERS | {RUN, SERVE, UPLOADS, CANCEL},
       targets=("state_dir",), **_flows("state_dir"),
       help="Where the resume journal lives (default: ~/.local/state/s3ferry).",
       variants={**dict.fromkeys((RUN, SERVE), Variant("Journal and locks of the flows that name no state_dir "
                              "(default: ~/.local/state/s3ferry).")),
                 **dict.fromkeys(READERS, Variant("The journal to read, of the flows that name no state_dir "
                                                  "(default: ~/.local/state/s3ferry)."))}),
    _o("audit_log", "--audit-log", metavar="PATH", envvar="S3FERRY_AUDIT_LOG", commands=TRANSFERS,
       targets=("audit_log",), **_flows("audit_log"),
       help="Append every delivery to this hash-chained log ('off': none; default: audit.jsonl in the state dir)."),
)

SFTP = (
    _o("identity", "--identity", "-i", kind="path", multiple=True, commands=TO_SFTP, endpoint=True,
       targets=("sftp.identity",), **_flows("identity"),
       help="SSH private key file (like ssh -i); default: ~/.ssh/config, default keys, agent."),
    _o("known_hosts", "--known-hosts", kind="path", commands=TO_SFTP, endpoint=True, targets=("sftp.known_hosts",),
       **_flows("known_hosts"), help="known_hosts file (default: UserKnownHostsFile or ~/.ssh/known_hosts)."),
    _o("host_key", "--host-key", metavar="SHA256:...", commands=TO_SFTP, endpoint=True, targets=("sftp.host_key",),
       **_flows("host_key"), help="Pin the server's host key fingerprint."),
    _o("jump", "--jump", "-J", metavar="[USER@]HOST[:PORT]", commands=TO_SFTP, targets=("sftp.jump",),
       **_flows("jump"),
       help="Reach the SFTP server through this jump host (like ssh -J; ProxyJump in ~/.ssh/config works too)."),
    _o("password_file", "--password-file", kind="path", commands=TO_SFTP, endpoint=True,
       targets=("sftp.password_file", "ftp.password_file"), **_flows("password_file"),
       help="File holding the SFTP or FTP password (or set S3FERRY_SFTP_PASSWORD / S3FERRY_FTP_PASSWORD)."),
    _o("password_command", "--password-command", metavar="COMMAND", commands=TO_SFTP, endpoint=True,
       targets=("sftp.password_command", "ftp.password_command"), **_flows("password_command"),
       help="Command printing the SFTP or FTP password (run without a shell, once; e.g. \"pass show partner\")."),
    _o("identity_passphrase_file", "--identity-passphrase-file", kind="file", commands=TO_SFTP, endpoint=True,
       targets=("sftp.passphrase_file",), **_flows("identity_passphrase_file"),
       help="File holding the passphrase of an encrypted SSH key (--identity, IdentityFile)."),
    _o("identity_passphrase_env", "--identity-passphrase-env", metavar="VAR", commands=TO_SFTP, endpoint=True,
       targets=("sftp.passphrase_env",), **_flows("identity_passphrase_env"),
       help="Environment variable holding the passphrase of an encrypted SSH key."),
    _o("identity_passphrase_command", "--identity-passphrase-command", metavar="COMMAND", commands=TO_SFTP,
       endpoint=True, targets=("sftp.passphrase_command",), **_flows("identity_passphrase_command"),
       help="Command printing the passphrase of an encrypted SSH key (run without a shell, once)."),
    _o("ca_bundle", "--ca-bundle", kind="file", commands=TO_SFTP, endpoint=True,
       targets=("s3.ca_file", "ftp.ca_file", "http.ca_file"),
       help="CA certificates (PEM) to verify FTPS/HTTPS servers with, instead of the system's."),
)

S3 = (
    _o("sse_c_key_file", "--sse-c-key-file", kind="file", commands=WRITES_S3 | {VERIFY},
       targets=("s3.sse_c_key_file",),
       help="Encrypt the S3 destination with this customer key (SSE-C; 32 bytes or their base64).",
       variants={VERIFY: Variant("The SSE-C key the S3 DST is encrypted with (32 bytes or their base64).")}),
    _o("source_sse_c_key_file", "--source-sse-c-key-file", kind="file", commands=frozenset({CP, PUSH, VERIFY}),
       targets=("s3.source_sse_c_key_file",), help="The SSE-C key the S3 source is encrypted with.",
       variants={VERIFY: Variant("The SSE-C key the S3 SRC is encrypted with.")}),
    _o("sse_kms_key_id", "--sse-kms-key-id", metavar="KEY", commands=WRITES_S3, targets=("s3.sse_kms_key_id",),
       **_flows("sse_kms_key_id", "pull"), help="Encrypt the S3 destination with this KMS key (SSE-KMS)."),
    _o("endpoint_url", "--endpoint-url", commands=TO_S3, endpoint=True, targets=("s3.endpoint_url",),
       **_flows("endpoint_url"), help="S3 endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)."),
    _o("profile", "--profile", commands=TO_S3, endpoint=True, targets=("s3.profile",), **_flows("profile"),
       help="AWS profile (default: AWS_PROFILE)."),
    _o("region", "--region", commands=TO_S3, endpoint=True, targets=("s3.region",), **_flows("region"),
       help="AWS region (default: AWS_REGION / config)."),
    # request bodies worth signing are uploads: push only reads S3 (and tags objects)
    _o("sign_payload", "--sign-payload", kind="switch", commands=WRITES_S3 | {DOCTOR}, targets=("s3.sign_payload",),
       help="SHA-256 request bodies into the signature (default: only over plain http to a non-loopback host)."),
    _o("storage_class", "--storage-class", metavar="CLASS", commands=WRITES_S3, targets=("s3.storage_class",),
       **_flows("storage_class", "pull"), help="S3 storage class (STANDARD_IA, GLACIER_IR, ...)."),
    _o("content_type", "--content-type", metavar="TYPE", commands=WRITES_S3, targets=("s3.content_type",),
       **_flows("content_type", "pull"), help="Content-Type of the objects (default: from the name)."),
    _o("metadata", "--metadata", kind="pairs", multiple=True, metavar="KEY=VALUE", commands=WRITES_S3,
       targets=("s3.metadata",), **_flows("metadata", "pull"), help="User metadata (repeatable)."),
    _o("tag", "--tag", kind="pairs", multiple=True, metavar="KEY=VALUE", commands=WRITES_S3, targets=("s3.tags",),
       **_flows("tags", "pull"), help="Object tag (repeatable)."),
    _o("acl", "--acl", metavar="ACL", commands=WRITES_S3, targets=("s3.acl",), **_flows("acl", "pull"),
       help="Canned ACL (private, bucket-owner-full-control, ...)."),
)

#: OpenPGP stages (issue 19): decrypt what is read, encrypt what is written; passphrases never as values
PGP = (
    _o("decrypt", "--decrypt", kind="flag", commands=TRANSFERS, targets=("pgp.decrypt",), **_flows("decrypt"),
       help="Decrypt OpenPGP sources with --pgp-key (integrity checked: tampered or truncated input exits 3)."),
    _o("pgp_key", "--pgp-key", kind="file", commands=TRANSFERS, targets=("pgp.key_file",), **_flows("pgp_key"),
       help="OpenPGP secret key file for --decrypt."),
    _o("pgp_passphrase_file", "--pgp-passphrase-file", kind="file", commands=TRANSFERS,
       targets=("pgp.passphrase_file",), **_flows("pgp_passphrase_file"),
       help="File holding the passphrase of the OpenPGP secret key (--pgp-key, --sign-with)."),
    _o("pgp_passphrase_env", "--pgp-passphrase-env", metavar="VAR", commands=TRANSFERS,
       targets=("pgp.passphrase_env",), **_flows("pgp_passphrase_env"),
       help="Environment variable holding the OpenPGP key's passphrase."),
    _o("pgp_passphrase_command", "--pgp-passphrase-command", metavar="COMMAND", commands=TRANSFERS,
       targets=("pgp.passphrase_command",), **_flows("pgp_passphrase_command"),
       help="Command printing the OpenPGP key's passphrase (run without a shell, once)."),
    _o("verify_signature", "--verify-signature", kind="file", multiple=True, metavar="KEYFILE", commands=TRANSFERS,
       targets=("pgp.verify_signature",), **_flows("verify_signature"),
       help="With --decrypt: refuse (exit 3) unless signed by a key of KEYFILE (repeatable)."),
    _o("encrypt_to", "--encrypt-to", kind="file", multiple=True, metavar="KEYFILE", commands=TRANSFERS,
       targets=("pgp.encrypt_to",), **_flows("encrypt_to"),
       help="Encrypt what is written to the OpenPGP public key in KEYFILE (repeatable: every recipient); adds .gpg."),
    _o("sign_with", "--sign-with", kind="file", metavar="KEYFILE", commands=TRANSFERS, targets=("pgp.sign_with",),
       **_flows("sign_with"), help="With --encrypt-to: also sign with the OpenPGP secret key in KEYFILE."),
)

#: transforms in flight (issue 19): decompress what is read, compress what is written
TRANSFORMS = (
    _o("compress", "--compress", metavar="gzip|zstd[:LEVEL]", commands=TRANSFERS, targets=("compress",),
       **_flows("compress"),
       help="Compress in flight (gzip level 6, zstd level 3 unless :LEVEL); the name gains .gz / .zst."),
    _o("decompress", "--decompress", kind="choice", choices=DECOMPRESS, commands=TRANSFERS, targets=("decompress",),
       **_flows("decompress"),
       help="Decompress in flight (auto: gzip or zstd from the first bytes); the name loses .gz / .zst."),
    _o("keep_name", "--keep-name", kind="flag", commands=TRANSFERS, targets=("keep_name",), **_flows("keep_name"),
       help="With transforms (--compress, --decompress, --decrypt, --encrypt-to): keep the source's file name "
            "(no suffix added or removed)."),
)

DECISIONS = (
    _o("no_clobber", "--no-clobber", kind="flag", commands=frozenset({CP}),
       help="Never replace an existing destination file."),
    _o("overwrite", "--overwrite", kind="flag", commands=frozenset({CP}),
       help="Always copy, even when the destination already matches (default: skip matching files: same size, "
            "then same checksum where both sides have one, else same mtime)."),
    _o("dry_run", "--dry-run", kind="flag", commands=TRANSFERS | {RUN}, targets=("dry_run",),
       help="Print what would be copied, skipped, archived, deleted or marked; change nothing.",
       variants={RUN: Variant("Run every selected flow once (as --once) but change nothing: print what each "
                              "would copy, skip, archive, delete or mark.")}),
    _o("require_verified", "--require-verified", kind="switch", default=False, show_default=True,
       commands=READS, targets=("require_verified",), **_flows("require_verified"),
       help="Refuse (exit 3) a copy that cannot be verified against an independent check, instead of completing "
            "it and saying 'NOT verified'.",
       variants={**{job: Variant("Refuse (exit 3, and retry later) a file that cannot be verified against an "
                                 "independent check; --no-require-verified delivers it saying 'NOT verified'.", True)
                    for job in JOBS},
                 VERIFY: Variant("Exit 3 when a file could only be compared by size (and nothing differs).")}),
    _o("size_only", "--size-only", kind="flag", commands=frozenset({VERIFY}),
       help="Compare sizes only: a quick pass that reads no byte (files of one size say 'size only')."),
)

JOB_SETTINGS = (
    _o("archive", "--archive", default=".done", show_default=True, metavar="NAME", commands=frozenset({PULL}),
       **_flows("archive", "pull"), help="Folder beside each pulled file that receives it once it is verified in S3."),
    _o("settle", "--settle", kind="age", default="0s", show_default=True, commands=frozenset({PULL}),
       **_flows("settle", "pull"), help="Leave files modified more recently than this (still being written)."),
    _o("retention_days", "--retention-days", kind="float", default=0, show_default=True, commands=frozenset({PULL}),
       **_flows("retention_days", "pull"), help="Delete archived files older than this many days (0: keep them)."),
    _o("retry_failed", "--retry-failed", kind="flag", commands=frozenset({PUSH}), **_flows("retry_failed", "push"),
       help="Work through the retry queue of failed deliveries (skipping objects delivered or deleted since)."),
)

OTHERS = (
    _o("once", "--once", kind="flag", commands=frozenset({RUN}),
       help="Run every selected flow once, concurrently, and exit with the worst exit code."),
    _o("check", "--check", kind="flag", commands=frozenset({RUN, SERVE}),
       help="Only validate the file: list every problem, or one line per flow.",
       variants={SERVE: Variant("Only validate: the flows file as run --check does, and the token, TLS files and "
                                "--listen; start nothing.")}),
    _o("flow", "--flow", multiple=True, dest="selected", metavar="NAME", commands=frozenset({RUN, SERVE}) | READERS,
       help="Run only this flow (repeatable).",
       variants={STATUS: Variant("Only this flow (repeatable)."),
                 HISTORY: Variant("Only the runs of this flow (repeatable).")}),
    _o("since", "--since", kind="age", metavar="AGE", commands=frozenset({HISTORY}),
       help="Only runs that ended in the last AGE (7d, 12h, 30m)."),
    _o("failed", "--failed", kind="flag", commands=frozenset({HISTORY}), help="Only failures."),
    _o("limit", "--limit", kind="int", default=50, show_default=True, commands=frozenset({HISTORY}),
       help="At most this many lines, newest first."),
    _o("write_test", "--write-test", kind="flag", commands=frozenset({DOCTOR}),
       help="Also PutObject a small test object under the prefix and delete it again."),
    _o("prefix", "--prefix", kind="flag", commands=frozenset({CANCEL}),
       help="Every upload whose key starts with the given key."),
    _o("older_than", "--older-than", metavar="AGE", commands=frozenset({CANCEL}),
       help="Only uploads started longer ago than AGE (7d, 12h, 30m)."),
    _o("size", "--size", kind="size", default="1GiB", show_default=True, commands=frozenset({DEMO}),
       help="Size of the random demo file."),
    _o("keep", "--keep", kind="flag", commands=frozenset({DEMO}),
       help="Leave the servers' folder in place (its path is printed)."),
    _o("listen", "--listen", default="127.0.0.1:8470", show_default=True, metavar="HOST:PORT",
       commands=frozenset({SERVE}), help="Address of the API, status page and /metrics ([::1]:8470 for IPv6)."),
    _o("tls_cert", "--tls-cert", kind="file", metavar="FILE", commands=frozenset({SERVE}),
       help="Serve HTTPS with this PEM certificate (chain); needs --tls-key."),
    _o("tls_key", "--tls-key", kind="file", metavar="FILE", commands=frozenset({SERVE}),
       help="The private key (PEM) of --tls-cert."),
    _o("token_file", "--token-file", kind="file", metavar="FILE", commands=frozenset({SERVE}),
       help="File holding the bearer token every endpoint but /healthz requires (or set S3FERRY_SERVE_TOKEN)."),
    _o("no_auth", "--no-auth", kind="flag", commands=frozenset({SERVE}),
       help="Serve without a token: only on a loopback address."),
    _o("grace", "--grace", kind="float", default=30.0, show_default=True, metavar="SECONDS",
       commands=frozenset({SERVE}),
       help="On SIGTERM/SIGINT: how long runs in flight may take to finish before they are cancelled."),
)

#: the table, in the order --help lists the options
OPTIONS: tuple[Option, ...] = (*ENGINE, *TREES, *JOB_SETTINGS, *TRANSFORMS, *SFTP, *S3, *PGP, *DECISIONS, *OTHERS,
                              *OUTPUT)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def options_of(command: str) -> tuple[Option, ...]:
    return tuple(o for o in OPTIONS if command in o.commands)


def flows_options() -> dict[str, Option]:
    """The flows-file key -> its option."""
    return {o.flows_key: o for o in OPTIONS if o.flows_key is not None}


ENDPOINT_KEYS: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.endpoint)


def option_of_target(target: str) -> Option | None:
    """The option that sets a TransferOptions field (for naming it in an error)."""
    return next((o for o in OPTIONS if target in o.targets), None)


def named(exc: OptionError, name_of: Mapping[str, str]) -> UsageError:
    """``exc`` with the option named as the user wrote it: ``name_of`` maps an option's name to that."""
    option = option_of_target(exc.target)
    name = name_of.get(option.name) if option is not None else None
    return UsageError(exc.named(name or exc.target.rpartition(".")[2]))


def build_transfer_options(values: Mapping[str, Any], sftp_type: type[SftpOptions] = SftpOptions,
                           **sftp_extra: Any) -> TransferOptions:
    """The typed options from option values by parameter name (missing or None: the built-in default).

    Values are as typed: sizes in bytes, paths as Paths, metadata and tags as (key, value) pairs.
    """
    parts: dict[str, dict[str, Any]] = {"": {}, "sftp": dict(sftp_extra), "s3": {}, "ftp": {}, "http": {},
                                        "pgp": {}}
    for option in OPTIONS:
        value = values.get(option.param)
        if value is None or not option.targets:
            continue
        for target in option.targets:
            group, _, name = target.rpartition(".")
            parts[group][name] = value
    top = parts[""]
    if values.get("no_clobber") and values.get("overwrite"):
        raise UsageError("--no-clobber and --overwrite contradict each other")
    if values.get("no_clobber") or values.get("overwrite"):
        top["overwrite"] = "never" if values.get("no_clobber") else "always"
    known = {f.name for f in dataclasses.fields(TransferOptions)}
    assert set(top) <= known, set(top) - known
    return TransferOptions(**top, sftp=sftp_type(**parts["sftp"]), s3=S3Options(**parts["s3"]),
                           ftp=FtpOptions(**parts["ftp"]), http=HttpOptions(**parts["http"]),
                           pgp=PgpOptions(**parts["pgp"]))
