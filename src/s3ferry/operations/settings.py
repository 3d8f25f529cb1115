"""The user's config file: option defaults for every command, and named endpoints -- read for the
command line (:mod:`s3ferry.cli.settings` adds the click glue) and for the Python API alike.

Where: ``$S3FERRY_CONFIG`` if set (it must exist), else
``$XDG_CONFIG_HOME/s3ferry/config.toml``, else ``~/.config/s3ferry/config.toml``
(a missing default file means no config)::

    [defaults]                      # any command's option, by its CLI name
    part_size = "16MiB"             # (part-size and part_size both work)
    upload_streams = 8
    endpoint_url = "https://s3.eu-central-1.amazonaws.com"

    [endpoints.partner]             # `s3ferry cp partner:/2026/x.csv s3://raw/`
    url = "sftp://etl@partner.example.com:2222/out"
    identity = "~/.ssh/partner_ed25519"
    known_hosts = "~/.ssh/known_hosts.partner"

Precedence, highest first: command-line flags (the API's keyword arguments), environment variables of the
option (``S3FERRY_STATE_DIR``), the options of a named endpoint the command uses, ``[defaults]``, the
built-in defaults. ``NAME:PATH`` is expanded only when NAME is a configured endpoint; anything else is left
as it is, so local paths holding ``:`` still work. Relative paths in the file are relative to the file's
folder; ``~`` is expanded. Every problem is reported with its line (``config.toml:3: ...``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from s3ferry.core import optionspec
from s3ferry.core.errors import UsageError
from s3ferry.core.options import OptionError, TransferOptions, parse_size, split_pairs
from s3ferry.core.optionspec import Option
from s3ferry.core.units import age_seconds

if TYPE_CHECKING:
    from s3ferry.core.tomlfile import LineIndex

#: the options a named endpoint may carry (besides ``url``): the option table's ``endpoint`` ones
ENDPOINT_KEYS = optionspec.ENDPOINT_KEYS
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REF_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*):(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    #: option key (underscores) -> (value as written, line in the file)
    options: dict[str, tuple[Any, int]] = field(default_factory=dict)

    def expand(self, path: str) -> str:
        """The endpoint's URL with ``path`` appended to its path.

        Paths are literal in s3/sftp/ftp/file URLs (urls.py, README *Names and paths*), so ``path``
        is appended exactly as typed; only an http(s) endpoint, a real URL, gets it percent-quoted
        (urls.parse decodes an http path again).
        """
        if not path:
            return self.url
        tail = path.lstrip("/")
        if self.url.split("://", 1)[0].lower() in ("http", "https"):
            tail = quote(tail, safe="/~")
        return f"{self.url.rstrip('/')}/{tail}"


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    #: ``[defaults]`` by option key as written (normalised to underscores), with its line
    defaults: dict[str, tuple[Any, int]] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    text: str = ""


def config_path() -> tuple[Path | None, bool]:
    """The config file's path and whether it must exist (named by ``S3FERRY_CONFIG``)."""
    explicit = os.environ.get("S3FERRY_CONFIG")
    if explicit:
        return Path(explicit).expanduser(), True
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "s3ferry" / "config.toml", False


class ConfigError(UsageError):
    """The config file is unusable: its problems, one line each (printed before the error line)."""

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.lines = lines or []


class Problems:
    """The problems found in the file, each on its line; raised together."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, line: int, message: str) -> None:
        self.items.append(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")

    def raise_any(self) -> None:
        """One problem: the error itself; more: one line each (see ``cli.settings.fail_config``), then the error."""
        if len(self.items) == 1:
            raise ConfigError(self.items[0])
        if self.items:
            raise ConfigError(f"{self.path}: {len(self.items)} errors in the config file", list(self.items))


def load(path: Path | None = None, required: bool = False, problems: Problems | None = None) -> Config:
    """Read and check the file's structure (option values are checked by :func:`default_map`).

    Problems are raised as one :class:`UsageError`, or added to ``problems`` when given.
    """
    if path is None:
        path, required = config_path()
    assert path is not None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} (S3FERRY_CONFIG) does not exist") from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    # here: most runs have no config file, and every run reads this module
    from s3ferry.core.tomlfile import LineIndex, TomlSyntax
    from s3ferry.core.tomlfile import parse as parse_toml

    try:
        data = parse_toml(text)
    except TomlSyntax as exc:
        raise ConfigError(f"{path}:{exc.line}: not valid TOML: {exc.message}") from exc
    index = LineIndex(text)
    collect = problems is not None
    problems = problems if problems is not None else Problems(path)
    problems.path = path
    for key in data:
        if key not in ("defaults", "endpoints"):
            problems.add(index.table((key,)), f"unknown section [{key}] (expected [defaults] or [endpoints.NAME])")
    defaults: dict[str, tuple[Any, int]] = {}
    raw_defaults = data.get("defaults", {})
    if not isinstance(raw_defaults, dict):
        problems.add(0, "defaults must be a table: [defaults]")
        raw_defaults = {}
    for key, value in raw_defaults.items():
        defaults[key.replace("-", "_")] = (value, index.key(("defaults",), key))
    endpoints: dict[str, Endpoint] = {}
    raw_endpoints = data.get("endpoints", {})
    if not isinstance(raw_endpoints, dict):
        problems.add(0, "endpoints must be tables: [endpoints.NAME]")
        raw_endpoints = {}
    for name, table in raw_endpoints.items():
        endpoint = _endpoint(path, index, name, table, problems)
        if endpoint is not None:
            endpoints[name] = endpoint
    if not collect:
        problems.raise_any()
    return Config(path, defaults, endpoints, text)


def _endpoint(path: Path, index: LineIndex, name: str, table: Any, problems: Problems) -> Endpoint | None:
    from s3ferry.core.urls import parse

    where, at = f"endpoints.{name}", ("endpoints", name)
    line = index.table(at)
    if not isinstance(table, dict):
        problems.add(index.key(("endpoints",), name), f"{where} must be a table: [endpoints.{name}]")
        return None
    if not _NAME_RE.match(name):
        problems.add(line, f"endpoint name {name!r}: use letters, digits, '-', '_' and '.'")
    url = table.get("url")
    if not isinstance(url, str) or not url:
        problems.add(line, f"{where}: missing url = \"sftp://user@host/path\" (or s3://, ftp://, a local path)")
    else:
        try:
            parse(url)
        except UsageError as exc:
            problems.add(index.key(at, "url"), f"{where}: url: {exc}")
        if "://" not in url:
            url = str(Path(url).expanduser() if url.startswith("~") else (path.parent / url))
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key == "url":
            continue
        norm = key.replace("-", "_")
        if norm not in ENDPOINT_KEYS:
            hint = did_you_mean(norm, ("url", *ENDPOINT_KEYS))
            problems.add(index.key(at, key), f"{where}: unknown key {key!r}{hint} "
                                                      f"(allowed: url, {', '.join(ENDPOINT_KEYS)})")
            continue
        options[norm] = (value, index.key(at, key))
    if problems.items:
        return None  # the file is refused as a whole
    return Endpoint(name, str(url), options)  # option values are checked against each command that uses them


def did_you_mean(key: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def expand(cfg: Config, text: str) -> tuple[str, Endpoint | None]:
    """``NAME:PATH`` for a configured NAME -> the endpoint's URL with PATH appended; else unchanged."""
    if "://" in text:
        return text, None
    match = _REF_RE.match(text)
    if not match or match.group(1) not in cfg.endpoints:
        return text, None
    endpoint = cfg.endpoints[match.group(1)]
    return endpoint.expand(match.group(2)), endpoint


def discover(config: Path | str | bool | None = None) -> Config:
    """The config the API uses: ``None``/``True`` finds it as the command line does, ``False`` is none, a
    path is that file (it must exist)."""
    if config is False:
        return Config()
    if config is None or config is True:
        return load()
    return load(Path(config).expanduser(), required=True)


# -- option values without click (the API) ------------------------------------------------------

def config_keys() -> dict[str, tuple[Option, Any]]:
    """Config key -> (option, the fixed value of a ``--resume``-like flag or None), as the CLI spells keys:
    an option's name, its parameter's and its long flags without ``--`` (dashes as underscores)."""
    keys: dict[str, tuple[Option, Any]] = {}
    for option in optionspec.OPTIONS:
        for flag in option.flags:
            if flag.startswith("--"):
                keys[flag[2:].replace("-", "_")] = (option, option.flag_value)
        if option.flag_value is None:
            keys.setdefault(option.name, (option, None))
            keys.setdefault(option.param, (option, None))
    return keys


def convert(option: Option, fixed: Any, value: Any, base: Path) -> Any:
    """A value from the file as the option's parameter takes it (sizes in bytes, paths relative to ``base``);
    raises :class:`UsageError` saying what is expected."""
    if fixed is not None:
        if value is not True:
            raise UsageError("set it to true (or leave it out)")
        return fixed
    if option.multiple:
        values = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(values, list):
            raise UsageError("expected a value or a list of values")
        if option.kind == "pairs":
            return split_pairs([str(v) for v in values], option.name)
        return tuple(_one(option, v, base) for v in values)
    return _one(option, value, base)


def _one(option: Option, value: Any, base: Path) -> Any:
    kind = option.kind
    if kind in ("flag", "switch"):
        if not isinstance(value, bool):
            raise UsageError("expected true or false")
        return value
    if isinstance(value, (dict, list, bool)):
        raise UsageError("expected a single value")
    if kind == "size":
        return parse_size(value)
    if kind in ("int", "count"):
        if not isinstance(value, int):
            raise UsageError(f"expected a whole number, not {value!r}")
        return value
    if kind == "float":
        if not isinstance(value, (int, float)):
            raise UsageError(f"expected a number, not {value!r}")
        return float(value)
    if kind == "age":
        return age_seconds(value)
    if kind in ("path", "file"):
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else base / path
    if kind == "choice" and value not in option.choices:
        raise UsageError(f"expected one of {', '.join(option.choices)}, not {value!r}")
    return str(value)


def command_values(cfg: Config, command: str, endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    """``command``'s option values (by parameter name) from the table's defaults, ``[defaults]``, the options
    of the named ``endpoints`` it uses, then the options' environment variables: what the CLI's values are
    before its flags apply.

    Every problem of the file is raised at once (:class:`ConfigError`, each on its line); a key no command
    has is one.
    """
    values = {o.param: _default(o, command) for o in optionspec.options_of(command)}
    if cfg.path is not None:
        _apply_file(cfg, cfg.path, command, endpoints, values)
    for option in optionspec.options_of(command):
        if option.envvar and os.environ.get(option.envvar):
            values[option.param] = convert(option, None, os.environ[option.envvar], Path.cwd())
    return values


def _default(option: Option, command: str) -> Any:
    value = option.default_for(command)
    return convert(option, None, value, Path.cwd()) if option.kind == "age" and isinstance(value, str) else value


def _apply_file(cfg: Config, path: Path, command: str, endpoints: Iterable[Endpoint], values: dict[str, Any]) -> None:
    keys, problems = config_keys(), Problems(path)

    def put(known: tuple[Option, Any], value: Any, where: str, line: int) -> bool:
        """Set one option's value for ``command`` (if it has the option); a bad value is a problem."""
        option, fixed = known
        if command not in option.commands:
            return False  # e.g. SFTP settings for a command that only talks to S3
        try:
            values[option.param] = convert(option, fixed, value, path.parent)
        except UsageError as exc:
            problems.add(line, f"{where}: {exc}")
            return False
        return True

    for key, (value, line) in cfg.defaults.items():
        if key not in keys:
            problems.add(line, f"[defaults]: unknown option {key!r}{did_you_mean(key, keys)}")
        else:
            put(keys[key], value, f"[defaults]: {key}", line)
    owners: dict[str, tuple[str, Any]] = {}
    for endpoint in endpoints:
        for key, (value, line) in endpoint.options.items():
            option = keys[key][0]
            if not put(keys[key], value, f"endpoints.{endpoint.name}: {key}", line):
                continue
            owner, before = owners.setdefault(option.param, (endpoint.name, values[option.param]))
            if owner != endpoint.name and values[option.param] != before:
                raise UsageError(f"endpoints {owner} and {endpoint.name} both set {option.name} (to different "
                                 f"values); one command takes one {option.name}: give it as an argument")
    problems.raise_any()


def expand_all(cfg: Config, *texts: str | Any) -> tuple[list[Any], list[Endpoint]]:
    """Each ``NAME:PATH`` of ``texts`` expanded (other values unchanged), and the endpoints they named."""
    out: list[Any] = []
    used: list[Endpoint] = []
    for text in texts:
        if isinstance(text, str):
            text, endpoint = expand(cfg, text)
            if endpoint is not None:
                used.append(endpoint)
        out.append(text)
    return out, used



# -- the Python API's options ---------------------------------------------------------------------

#: what ``overwrite=`` accepts: the modes, and the booleans a Python caller means by them
OVERWRITE = {True: "always", False: "never", "always": "always", "never": "never", "changed": "changed"}
_FIELDS = frozenset(f.name for f in dataclasses.fields(TransferOptions))
#: an option by its parameter's name (the flags sharing one parameter, --resume/--force, are left out)
_BY_PARAM = {o.param: o for o in optionspec.OPTIONS if o.flag_value is None}


@dataclass(frozen=True)
class Prepared:
    """An API call's ends (named endpoints expanded), its typed options and the command's other values
    (``transfers``, ``archive``, ``include``, ...) by parameter name."""

    src: Any
    dst: Any
    options: TransferOptions
    values: dict[str, Any]


def prepare(command: str, src: Any, dst: Any, options: TransferOptions | None, overrides: Mapping[str, Any],
            config: Path | str | bool | None) -> Prepared:
    """What the command line would run ``command`` with, given the same config file: the file's
    ``[defaults]`` and the named endpoints' options, then ``options`` (its fields that differ from
    :class:`TransferOptions`'s defaults), then ``overrides`` -- :class:`TransferOptions` fields, or
    the command's options by their name in the option table (``endpoint_url``, ``identity``, ``transfers``)."""
    cfg = discover(config)
    (src, dst), endpoints = expand_all(cfg, src, dst)
    values = command_values(cfg, command, endpoints)
    fields: dict[str, Any] = {}
    unknown = []
    for name, value in overrides.items():
        if name == "overwrite":
            fields[name] = overwrite_mode(value)
        elif name in _FIELDS:
            fields[name] = value
        elif name in values and value is not None:
            values[name] = _typed(_BY_PARAM[name], value) if name in _BY_PARAM else value
        elif name not in values:
            unknown.append(name)
    if unknown:
        raise UsageError(f"unknown option(s) for {command}: {', '.join(sorted(unknown))} (TransferOptions fields, "
                         f"or {', '.join(sorted(set(values) - _FIELDS))})")
    try:
        built = optionspec.build_transfer_options(values)
    except OptionError as exc:
        raise optionspec.named(exc, {}) from None
    if options is not None:
        built = explicit(built, options)
    return Prepared(src, dst, explicit(built, fields), values)


async def aprepare(command: str, src: Any, dst: Any, options: TransferOptions | None,
                   overrides: Mapping[str, Any], config: Path | str | bool | None) -> Prepared:
    """:func:`prepare` for a coroutine: finding and reading the config file is blocking file I/O, so it
    runs in a worker thread instead of on the event loop."""
    import asyncio  # here, not at the top: the CLI imports this module at every start (--help, completion)

    return await asyncio.to_thread(prepare, command, src, dst, options, overrides, config)


def overwrite_mode(value: object) -> str:
    """``overwrite=``'s value as a mode: True is "always", False "never"; the mode names are kept."""
    if isinstance(value, (bool, str)) and value in OVERWRITE:
        return OVERWRITE[value]
    raise UsageError(f"overwrite must be True (always replace), False (never replace), 'always', 'never' or "
                     f"'changed' (copy when the destination differs), not {value!r}")


def _typed(option: Option, value: Any) -> Any:
    """A keyword argument as the option's parameter takes it ("16MiB", a dict of pairs, a path as str)."""
    if option.kind == "pairs" and isinstance(value, Mapping):
        return tuple((str(k), str(v)) for k, v in value.items())
    if option.multiple and isinstance(value, (str, Path)):
        value = [str(value)]
    return convert(option, option.flag_value, list(value) if isinstance(value, tuple) else value, Path.cwd())


def explicit(base: Any, given: Any) -> Any:
    """``base`` with what ``given`` sets: a mapping's every item, or a dataclass's fields that differ from its
    class's defaults (nested option records merged field by field)."""
    if isinstance(given, Mapping):
        items = dict(given)
    else:
        default = type(given)()
        items = {f.name: getattr(given, f.name) for f in dataclasses.fields(given)
                 if getattr(given, f.name) != getattr(default, f.name)}
    for name, value in items.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            items[name] = explicit(getattr(base, name), value)
    return base.replace(**items) if isinstance(base, TransferOptions) else dataclasses.replace(base, **items)
