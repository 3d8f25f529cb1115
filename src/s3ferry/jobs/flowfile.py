"""The flows file of ``s3ferry run``: named pull/push flows, each with its endpoints, options and schedule.

::

    [defaults]                  # optional: applies to every flow (a flow's own value wins)
    state_dir = "/var/lib/s3ferry"
    endpoint_url = "https://s3.example.com"

    [flows.partner-drop]
    kind = "pull"               # pull: sftp/local folder -> s3://   push: s3:// -> sftp/local folder
    source = "sftp://etl@partner.example.com/out"
    destination = "s3://raw/partner/"
    schedule = "*/15 * * * *"   # cron, UTC; or every = "10m" (exactly one of the two)
    archive = ".done"           # pull only
    settle = "60s"              # pull only (or a number of seconds)
    retention_days = 30         # pull only
    include = ["*.csv.gz"]
    identity = "~/.ssh/partner_ed25519"
    password_env = "PARTNER_SFTP_PASSWORD"

Keys: those below say what a flow is; every other key is an option of the
``pull`` / ``push`` command, spelled as the option table says (its
``flows_key``: ``part_size``, ``identity``, ``tags``, ...; which kinds of flow
take it: ``flows_kinds``), read and checked by the same rules (see
:mod:`s3ferry.core.optionspec`; the README lists them all).

=================  ==========================================================
kind               ``"pull"`` (an sftp:// or local folder into s3://) or
                   ``"push"`` (s3:// into an sftp:// or local folder);
                   required, not in [defaults]
source             location (required, not in [defaults])
destination        location (required, not in [defaults])
schedule / every   a cron expression (UTC) or an interval (``"10m"``,
                   ``"1h30m"``); exactly one, required (may come from
                   [defaults]: a flow's own ``schedule`` or ``every`` replaces
                   whichever [defaults] has)
password_env       name of the environment variable holding the SFTP
                   password (read at each run; unset is an error for ``run``
                   and a warning for ``run --check``); a flow's own
                   password_env or password_file replaces the other from
                   [defaults]
=================  ==========================================================

With ``include``, only matching paths are transferred; ``exclude`` then
removes paths (:func:`ordered_filters`). ``require_verified`` is on unless a
flow turns it off, as for ``pull`` and ``push``.

Pull-only and push-only keys in [defaults] apply to the flows of that kind and
are ignored by the others; in a flow of the other kind they are an error (the
object settings: they need a destination in S3, which only pull flows have).
Relative paths (key files, local folders, ``state_dir``) are relative to the
flows file's folder; ``~`` is expanded.

Credentials are never inline: a key that looks like one (``password``,
``secret``, ``token``, ...) is refused, pointing at ``password_env`` /
``password_file`` (S3 credentials come from the AWS chain: ``profile``).

:func:`load` reports *every* problem with the line it is on (tomllib gives
no positions for keys, so the lines of table headers and ``key =`` are found
in the raw text: the first line of that key inside the table's span).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from s3ferry.core.errors import UsageError
from s3ferry.core.options import OptionError, Pairs, SftpOptions, TransferOptions, parse_size, read_secret
from s3ferry.core.optionspec import (
    BY_NAME,
    OPTIONS,
    WRITES_S3,
    Option,
    build_transfer_options,
    flows_options,
    named,
)
from s3ferry.core.tomlfile import LineIndex, TomlSyntax
from s3ferry.core.tomlfile import parse as parse_toml
from s3ferry.core.urls import Location, parse
from s3ferry.jobs.pull import PullSettings
from s3ferry.jobs.push import PushSettings
from s3ferry.jobs.schedule import Cron, Every, Schedule, parse_duration
from s3ferry.operations.tree import Filter

KINDS = ("pull", "push")
PULL_SOURCES = ("sftp", "file")  # sources that can archive (Features.archiving); not ftp:// yet
PUSH_DESTINATIONS = ("sftp", "file")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEY = re.compile(r"pass(word|wd|phrase)?|secret|token|credential|private_?key|access_?key|api_?key|auth",
                         re.IGNORECASE)
_S3_SECRET_KEY = re.compile(r"secret|access_?key|aws|credential", re.IGNORECASE)


# -- problems and where they are ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One error or warning, at a line of the file."""

    line: int
    where: str  # "flows.NAME", "defaults" or "" (the whole file)
    message: str
    warning: bool = False

    def format(self, filename: str) -> str:
        where = f"{self.where}: " if self.where else ""
        level = "warning: " if self.warning else ""
        return f"{filename}:{self.line}: {where}{level}{self.message}"


# -- typed values ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvPasswordSftpOptions(SftpOptions):
    """SFTP options whose password comes from the environment variable named in the flows file.

    The variable is read each time a connection needs the password (never
    stored in the options, never printed).
    """

    password_env: str = ""

    def password(self) -> str | None:
        return read_secret(None, self.password_env, "sftp.password_file", required=True)


@dataclass(frozen=True)
class Flow:
    """One validated flow of the file."""

    name: str
    kind: str  # "pull" or "push"
    source: Location
    destination: Location
    schedule: Schedule
    options: TransferOptions
    settings: PullSettings | PushSettings
    line: int
    password_env: str | None = None

    @property
    def lock_name(self) -> str:
        """A file-name-safe form of the name (a digest is added when anything had to be replaced)."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.name)
        if safe != self.name or safe.startswith("."):
            safe = f"{safe.lstrip('.')}-{hashlib.sha256(self.name.encode()).hexdigest()[:8]}"
        return safe

    def describe(self, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        first = self.schedule.first_after(now)
        when = "at start" if isinstance(self.schedule, Every) else first.strftime("%Y-%m-%d %H:%M UTC")
        return f"{self.name}: {self.kind} {self.source} -> {self.destination}, {self.schedule}, next run {when}"


@dataclass
class FlowFile:
    path: Path
    flows: dict[str, Flow] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: the ``[serve]`` table as written: ``s3ferry serve``'s own settings (its event intake); ``run`` ignores it
    serve: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.warning]


# -- key specifications -----------------------------------------------------------------------------------------

Convert = Callable[[Any, Path], Any]


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _string(value: Any, base: Path) -> str:
    if not isinstance(value, str):
        raise UsageError(f"must be a string, not {_type_name(value)}")
    if not value.strip():
        raise UsageError("must not be empty")
    return value


def _integer(low: int, high: int) -> Convert:
    def convert(value: Any, base: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"must be an integer, not {_type_name(value)}")
        if not low <= value <= high:
            raise UsageError(f"must be between {low} and {high}, not {value}")
        return int(value)
    return convert


def _boolean(value: Any, base: Path) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"must be true or false, not {_type_name(value)}")
    return value


def _number(value: Any, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"must be a number, not {_type_name(value)}")
    if value < 0:
        raise UsageError(f"must not be negative, not {value}")
    return float(value)


def _seconds(value: Any, base: Path) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    return _number(value, base)


def _size(value: Any, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UsageError(f"must be a size like \"16MiB\" or a number of bytes, not {_type_name(value)}")
    return parse_size(value)


def _path(value: Any, base: Path) -> Path:
    path = Path(_string(value, base)).expanduser()
    return path if path.is_absolute() else base / path


def _paths(value: Any, base: Path) -> tuple[Path, ...]:
    if isinstance(value, list):
        return tuple(_path(v, base) for v in value)
    return (_path(value, base),)


def _globs(value: Any, base: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError("must be an array of glob strings, like [\"*.csv.gz\"]")
    return tuple(value)


def _string_table(value: Any, example: str) -> Pairs:
    if not isinstance(value, dict):
        raise UsageError(f"must be a table of strings, like {example}, not {_type_name(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise UsageError(f"the value of {key!r} must be a string, not {_type_name(item)} (quote it)")
    return tuple(value.items())


def _metadata(value: Any, base: Path) -> Pairs:
    return _string_table(value, '{ owner = "etl" }')  # then S3's rules, as for `pull --metadata`


def _tags(value: Any, base: Path) -> Pairs:
    return _string_table(value, '{ team = "data" }')  # then S3's rules, as for `pull --tag`


def _kind(value: Any, base: Path) -> str:
    if value not in KINDS:
        raise UsageError(f"must be \"pull\" or \"push\", not {value!r}")
    return str(value)


def _cron(value: Any, base: Path) -> Cron:
    try:
        return Cron.parse(_string(value, base))
    except UsageError as exc:
        raise UsageError(f"bad cron expression {value!r}: {exc}") from None


def _every(value: Any, base: Path) -> Every:
    if not isinstance(value, str):
        raise UsageError(f"must be a string with a unit, like \"10m\", not {_type_name(value)}")
    return Every.parse(value)


def _archive(value: Any, base: Path) -> str:
    name = _string(value, base)
    if "/" in name or name in (".", ".."):
        raise UsageError(f"must be a folder name (no \"/\"), not {name!r}")
    return name


def _env_name(value: Any, base: Path) -> str:
    name = _string(value, base)
    if not _ENV_NAME.match(name):
        raise UsageError(f"must name an environment variable (letters, digits, _), not {name!r}")
    return name


def _host_key(value: Any, base: Path) -> str:
    text = _string(value, base)
    if not text.startswith("SHA256:"):
        raise UsageError("must be a SHA256:... fingerprint (as `ssh-keygen -lf` prints)")
    return text


def _endpoint(value: Any, base: Path) -> str:
    text = _string(value, base)
    if not re.match(r"^https?://[^/\s]+", text, re.IGNORECASE):
        raise UsageError(f"must be an http:// or https:// URL, not {text!r}")
    return text


def _location(value: Any, base: Path) -> Location:
    text = _string(value, base)
    if "://" not in text:  # a local path: relative to the flows file
        path = Path(text).expanduser()
        text = str(path if path.is_absolute() else base / path) + ("/" if text.endswith("/") else "")
    try:
        return parse(text)
    except UsageError as exc:
        if "password inside the URL" in str(exc):  # the flows file has its own ways
            raise UsageError("refusing a password inside the URL: use password_env or password_file") from None
        raise


@dataclass(frozen=True)
class Spec:
    convert: Convert
    kinds: tuple[str, ...] = KINDS
    in_defaults: bool = True


#: how a value of each kind of option is read from TOML (the option table's kinds)
_BY_KIND: dict[str, Convert] = {
    "text": _string, "choice": _string, "int": _integer(-(2**31), 2**31), "float": _number, "size": _size,
    "path": _path, "file": _path, "flag": _boolean, "switch": _boolean, "age": _seconds,
}
#: options whose flows-file value is read (or checked) more closely than their kind says
_BY_NAME: dict[str, Convert] = {
    "identity": _paths, "encrypt_to": _paths, "verify_signature": _paths,
    "include": _globs, "exclude": _globs, "metadata": _metadata, "tag": _tags,
    "transfers": _integer(1, 64), "host_key": _host_key, "endpoint_url": _endpoint, "archive": _archive,
}
#: the flows-file key of each option, from the option table
OPTION_OF: dict[str, Option] = flows_options()
KEY_OF: dict[str, str] = {o.name: o.flows_key for o in OPTIONS if o.flows_key is not None}

SPECS: dict[str, Spec] = {
    "kind": Spec(_kind, in_defaults=False),
    "source": Spec(_location, in_defaults=False),
    "destination": Spec(_location, in_defaults=False),
    "schedule": Spec(_cron),
    "every": Spec(_every),
    "password_env": Spec(_env_name),
    **{key: Spec(_BY_NAME.get(o.name) or _BY_KIND[o.kind], o.flows_kinds) for key, o in OPTION_OF.items()},
}
#: settings of the S3 objects a flow creates: only pull flows write to S3
OBJECT_KEYS = tuple(key for key, o in OPTION_OF.items() if o.commands == WRITES_S3)
_FILE_KEYS = ("identity", "known_hosts", "password_file", "identity_passphrase_file", "pgp_key",
              "pgp_passphrase_file", "encrypt_to", "sign_with", "verify_signature")
#: the ways to give a flow's password: one of them (a flow's own replaces the one in [defaults])
_PASSWORD_KEYS = ("password_env", "password_file", "password_command")
#: the other secrets given one way each: a flow's own choice replaces the one in [defaults]
_ONE_OF = (("identity_passphrase_file", "identity_passphrase_env", "identity_passphrase_command"),
           ("pgp_passphrase_file", "pgp_passphrase_env", "pgp_passphrase_command"))


def ordered_filters(filters: Iterable[Filter]) -> tuple[Filter, ...]:
    """--include/--exclude (or a flow's include/exclude) in their order, with the include-first rule:
    an include that comes first means "only these" (as in rclone); the AWS CLI would copy everything,
    which is never what anyone who wrote it meant."""
    given = tuple(filters)
    if given and given[0].include:
        return (Filter("*", include=False), *given)
    return given


def flow_where(name: str) -> str:
    """``flows.NAME`` as TOML spells it (quoted when NAME is not a bare key)."""
    return f"flows.{name}" if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f"flows.{json.dumps(name)}"


# -- loading ----------------------------------------------------------------------------------------------------


@dataclass
class _Value:
    value: Any
    line: int
    where: str


def _wrong_kind(key: str, spec: Spec, kind: str) -> str:
    if key in OBJECT_KEYS:
        return f'"{key}" applies to flows whose destination is S3 (pull flows), not to a {kind} flow'
    return f'"{key}" applies to {spec.kinds[0]} flows only, this is a {kind} flow'


class _Loader:
    def __init__(self, path: Path, text: str, require_env: bool | frozenset[str]) -> None:
        self.path, self.text, self.require_env = path, text, require_env
        self.base = path.resolve().parent
        self.index = LineIndex(text)
        self.result = FlowFile(path)

    def problem(self, line: int, where: str, message: str, warning: bool = False) -> None:
        found = Problem(line, where, message, warning)
        if found not in self.result.problems:  # a [defaults] value is checked once per flow, reported once
            self.result.problems.append(found)

    def load(self) -> FlowFile:
        try:
            doc = parse_toml(self.text)
        except TomlSyntax as exc:
            column = f" (column {exc.column})" if exc.column is not None else ""
            self.problem(exc.line, "", f"TOML syntax error: {exc.message}{column}")
            return self.result
        for key in doc:
            if key not in ("defaults", "flows", "serve"):
                self.refuse_key((), key, "", 'unknown top-level key {key} (expected [defaults], [flows.NAME] '
                                             'and [serve] tables)')
        served = self.section(doc, "serve", required=False)
        self.result.serve = dict(served) if served is not None else {}
        defaults = self.section(doc, "defaults", required=False)
        flows = self.section(doc, "flows", required=True)
        if flows is None:
            return self.result
        if not flows:
            self.problem(self.index.table(("flows",)), "", "no flows: add a [flows.NAME] table")
        shared = self.table_values(defaults, ("defaults",), "defaults") if defaults is not None else {}
        if "schedule" in shared and "every" in shared:
            self.problem(shared.pop("every").line, "defaults", 'both "schedule" and "every": give exactly one')
        for name, table in flows.items():
            where = flow_where(name)
            if not isinstance(table, dict):
                self.problem(self.index.table(("flows", name)), where, "must be a table: [flows.NAME]")
                continue
            flow = self.flow(name, table, shared)
            if flow is not None:
                self.result.flows[name] = flow
        self.result.problems.sort(key=lambda p: p.line)
        return self.result

    def section(self, doc: dict[str, Any], name: str, required: bool) -> dict[str, Any] | None:
        if name not in doc:
            if required:
                self.problem(1, "", "no [flows.NAME] table: nothing to run")
            return None
        if not isinstance(doc[name], dict):
            self.problem(self.index.key((), name), "", f"{name} must be a table")
            return None
        return doc[name]  # type: ignore[no-any-return]

    def refuse_key(self, table: tuple[str, ...], key: str, where: str, unknown: str) -> None:
        line = self.index.key(table, key)
        if _SECRET_KEY.search(key):
            if _S3_SECRET_KEY.search(key):
                how = ("S3 credentials come from the AWS configuration chain: name a profile (profile = \"...\") "
                       "or set AWS_* variables in the environment")
            else:
                how = ("name an environment variable with password_env = \"VAR\", a file with "
                       "password_file = \"/path\" or a command with password_command = \"...\"")
            self.problem(line, where, f"refusing the inline secret {key!r}: credentials never go in the flows "
                                      f"file; {how}")
            return
        close = difflib.get_close_matches(key, SPECS, n=1)
        hint = f" (did you mean \"{close[0]}\"?)" if close else ""
        self.problem(line, where, unknown.format(key=f'"{key}"') + hint)

    def table_values(self, table: dict[str, Any], path: tuple[str, ...], where: str,
                     kind: str | None = None) -> dict[str, _Value]:
        """Each known key converted; problems recorded for the others."""
        values: dict[str, _Value] = {}
        for key, raw in table.items():
            spec = SPECS.get(key)
            if spec is None:
                self.refuse_key(path, key, where, "unknown key {key}")
                continue
            # a table value may be a [flows.NAME.KEY] section of its own
            line = self.index.table((*path, key)) if isinstance(raw, dict) else self.index.key(path, key)
            if where == "defaults" and not spec.in_defaults:
                self.problem(line, where, f'"{key}" belongs in a flow, not in [defaults]')
                continue
            if kind is not None and kind not in spec.kinds:
                self.problem(line, where, _wrong_kind(key, spec, kind))
                continue
            try:
                value = spec.convert(raw, self.base)
                option = OPTION_OF.get(key)
                if option is not None and option.targets:
                    build_transfer_options({option.param: value})  # the typed options' own checks
            except OptionError as exc:  # "part_size must be ...": the option is named in the message
                self.problem(line, where, str(named(exc, KEY_OF)))
                continue
            except UsageError as exc:
                self.problem(line, where, f"{key}: {exc}")
                continue
            values[key] = _Value(value, line, where)
        return values

    def flow(self, name: str, table: dict[str, Any], shared: dict[str, _Value]) -> Flow | None:
        path, where = ("flows", name), flow_where(name)
        header = self.index.table(path)
        before = len(self.result.errors)
        kind = table.get("kind")
        own = self.table_values(table, path, where, kind if kind in KINDS else None)
        values = {k: v for k, v in shared.items() if kind not in KINDS or kind in SPECS[k].kinds}
        for pair in (("schedule", "every"), _PASSWORD_KEYS, *_ONE_OF):
            if any(k in table for k in pair):  # a flow's own choice replaces the one in [defaults]
                for k in pair:
                    values.pop(k, None)
        values.update(own)
        for key in ("kind", "source", "destination"):
            if key not in table:
                self.problem(header, where, f'missing "{key}"')
        if "schedule" in table and "every" in table:
            self.problem(self.index.key(path, "every"), where, 'both "schedule" and "every": give exactly one')
        elif not {"schedule", "every"} & set(values) and not {"schedule", "every"} & set(table):
            self.problem(header, where, 'missing "schedule" (a cron expression, UTC) or "every" (an interval)')
        given = [k for k in _PASSWORD_KEYS if k in values]
        if len(given) > 1:
            self.problem(values[given[-1]].line, where, f'both "{given[0]}" and "{given[1]}": give one')
        if kind in KINDS:
            self.check_direction(kind, own.get("source"), own.get("destination"), where)
        self.warn_missing(name, values)
        if len(self.result.errors) > before:
            return None
        try:
            return self.build(name, header, values)
        except OptionError as exc:  # a combination the typed settings refuse
            self.problem(header, where, str(named(exc, KEY_OF)))
        except UsageError as exc:
            self.problem(header, where, str(exc))
        return None

    def check_direction(self, kind: str, source: _Value | None, destination: _Value | None, where: str) -> None:
        """pull: sftp/local -> s3://; push: s3:// -> sftp/local."""
        def shown(loc: Location) -> str:
            return "a local path" if loc.scheme == "file" else f"{loc.scheme}://"

        src_ok, dst_ok = (PULL_SOURCES, ("s3",)) if kind == "pull" else (("s3",), PUSH_DESTINATIONS)
        src_text = "s3://" if kind == "push" else "an sftp:// or local folder it can archive into"
        dst_text = "s3://" if kind == "pull" else "an sftp:// or local folder"
        if source is not None and source.value.scheme not in src_ok:
            self.problem(source.line, where, f"a {kind} flow reads from {src_text}, not {shown(source.value)}")
        if destination is not None and destination.value.scheme not in dst_ok:
            self.problem(destination.line, where,
                         f"a {kind} flow writes to {dst_text}, not {shown(destination.value)}")

    def warn_missing(self, name: str, values: dict[str, _Value]) -> None:
        env = values.get("password_env")
        if env is not None and not os.environ.get(env.value):
            required = self.require_env if isinstance(self.require_env, bool) else name in self.require_env
            self.problem(env.line, env.where, f"password_env {env.value} is not set", warning=not required)
        for key in ("identity_passphrase_env", "pgp_passphrase_env"):  # read when used: a warning here
            item = values.get(key)
            if item is not None and not os.environ.get(item.value):
                self.problem(item.line, item.where, f"{key} {item.value} is not set", warning=True)
        for key in _FILE_KEYS:
            item = values.get(key)
            if item is None:
                continue
            paths = item.value if isinstance(item.value, tuple) else (item.value,)
            for p in paths:
                if not p.exists():
                    self.problem(item.line, item.where, f"{key} {p} does not exist", warning=True)

    def build(self, name: str, line: int, values: dict[str, _Value]) -> Flow:
        v = {k: item.value for k, item in values.items()}
        kind = v["kind"]
        password_env = v.get("password_env")
        params = {OPTION_OF[k].param: value for k, value in v.items() if k in OPTION_OF}
        params.setdefault("require_verified", BY_NAME["require_verified"].default_for(kind))  # on for jobs
        options = (build_transfer_options(params, EnvPasswordSftpOptions, password_env=password_env)
                   if password_env else build_transfer_options(params))
        filters = ordered_filters([*(Filter(p, True) for p in v.get("include", ())),
                                   *(Filter(p, False) for p in v.get("exclude", ()))])
        transfers = v.get("transfers", BY_NAME["transfers"].default)
        settings: PullSettings | PushSettings
        if kind == "pull":
            extra = {k: v[k] for k in ("archive", "settle", "retention_days") if k in v}
            settings = PullSettings(filters=filters, transfers=transfers, **extra)
        else:
            settings = PushSettings(filters=filters, transfers=transfers,
                                    retry_failed=v.get("retry_failed", False))
        schedule = v["schedule"] if "schedule" in v else v["every"]
        return Flow(name, kind, v["source"], v["destination"], schedule, options, settings, line, password_env)


def load(path: Path, *, require_env: bool | frozenset[str] = True) -> FlowFile:
    """Read and validate a flows file; every problem is in :attr:`FlowFile.problems`.

    ``require_env``: for which flows (all: True, none: False, or a set of
    names) an unset ``password_env`` variable is an error (``run``) rather
    than a warning (``run --check``, maybe on a machine that is not the one
    the flows run on). Missing key and password files are always warnings.
    Raises :class:`UsageError` only when the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read the flows file {path}: {reason}") from exc
    return _Loader(path, text, require_env).load()
