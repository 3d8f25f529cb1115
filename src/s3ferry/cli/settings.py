"""The user's config file: option defaults for every command, and named endpoints.

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

Precedence, highest first: command-line flags, environment variables of the
option (``S3FERRY_STATE_DIR``), the options of a named endpoint the command
uses, ``[defaults]``, the built-in defaults. ``NAME:PATH`` is expanded only
when NAME is a configured endpoint; anything else is left as it is, so
local paths holding ``:`` still work. Relative paths in the file are relative
to the file's folder; ``~`` is expanded. Every problem is reported with its
line (``config.toml:3: ...``) and exits 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import click

from s3ferry.cli.common import fail
from s3ferry.core import optionspec
from s3ferry.core.errors import UsageError

if TYPE_CHECKING:
    from s3ferry.core.tomlfile import LineIndex

#: the options a named endpoint may carry (besides ``url``): the option table's ``endpoint`` ones
ENDPOINT_KEYS = optionspec.ENDPOINT_KEYS
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REF_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*):(.*)$", re.DOTALL)
_META_KEY = "s3ferry.cli.settings"
_ERROR_KEY = "s3ferry.cli.settings.error"


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


class _Problems:
    def __init__(self, path: Path) -> None:
        self.path, self.items = path, []  # type: ignore[var-annotated]

    def add(self, line: int, message: str) -> None:
        self.items.append(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")

    def raise_any(self) -> None:
        """One problem: the error itself; more: one line each (see :func:`fail_config`), then the error."""
        if len(self.items) == 1:
            raise ConfigError(self.items[0])
        if self.items:
            raise ConfigError(f"{self.path}: {len(self.items)} errors in the config file", list(self.items))


def fail_config(exc: UsageError) -> NoReturn:
    """Report a config (or location) problem: each of the file's problems on its line, then the error."""
    for line in exc.lines if isinstance(exc, ConfigError) else ():
        click.echo(line, err=True)
    fail(exc, False)


def load(path: Path | None = None, required: bool = False, problems: _Problems | None = None) -> Config:
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
    problems = problems if problems is not None else _Problems(path)
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


def _endpoint(path: Path, index: LineIndex, name: str, table: Any, problems: _Problems) -> Endpoint | None:
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
            hint = _did_you_mean(norm, ("url", *ENDPOINT_KEYS))
            problems.add(index.key(at, key), f"{where}: unknown key {key!r}{hint} "
                                                      f"(allowed: url, {', '.join(ENDPOINT_KEYS)})")
            continue
        options[norm] = (value, index.key(at, key))
    if problems.items:
        return None  # the file is refused as a whole
    return Endpoint(name, str(url), options)  # option values are checked against each command that uses them


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- options of the click commands ------------------------------------------------------

def _option_keys(command: click.Command) -> dict[str, tuple[click.Option, Any]]:
    """Config key -> (option, fixed value for flag_value options or None)."""
    keys: dict[str, tuple[click.Option, Any]] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in (None, "help"):
            continue
        names = [o for o in param.opts if o.startswith("--")]
        if param.is_flag and not param.is_bool_flag:
            # --resume / --force / --no-resume all set resume_mode: `force = true`
            for opt in names:
                keys[opt[2:].replace("-", "_")] = (param, param.flag_value)
            continue
        for opt in names:
            keys[opt[2:].replace("-", "_")] = (param, None)
        keys.setdefault(param.name, (param, None))
    return keys


def _convert(param: click.Option, fixed: Any, value: Any, base: Path, ctx: click.Context) -> Any:
    """The value for ``default_map`` (checked by the option's own type); raises click.BadParameter."""
    if fixed is not None:
        if value is not True:
            raise click.BadParameter("set it to true (or leave it out)")
        return fixed
    if param.is_flag and not isinstance(value, bool):
        raise click.BadParameter("expected true or false")
    if param.multiple:
        value = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(value, list):
            raise click.BadParameter("expected a value or a list of values")
    if isinstance(param.type, click.Path):
        value = [_path(v, base) for v in value] if param.multiple else _path(value, base)
    if isinstance(value, (dict, list)) and not param.multiple:
        raise click.BadParameter("expected a single value")
    param.type_cast_value(ctx, value)  # raises BadParameter with the type's own message
    return value


def _path(value: Any, base: Path) -> Any:
    if not isinstance(value, str):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def default_map(cfg: Config, group: click.Group, problems: _Problems | None = None) -> dict[str, dict[str, Any]]:
    """``[defaults]`` as click's default_map for every command of ``group`` that has the option."""
    if cfg.path is None:
        return {}
    collect = problems is not None
    problems = problems if problems is not None else _Problems(cfg.path)
    commands = {name: (cmd, _option_keys(cmd)) for name, cmd in group.commands.items()}
    result: dict[str, dict[str, Any]] = {name: {} for name in commands}
    every_key = sorted({k for _, keys in commands.values() for k in keys})
    for key, (value, line) in cfg.defaults.items():
        users = [(name, keys[key]) for name, (_, keys) in commands.items() if key in keys]
        if not users:
            problems.add(line, f"[defaults]: unknown option {key!r}{_did_you_mean(key, every_key)}")
            continue
        for name, (param, fixed) in users:
            ctx = click.Context(commands[name][0], info_name=name, resilient_parsing=True)
            try:
                result[name][param.name or key] = _convert(param, fixed, value, cfg.path.parent, ctx)
            except click.BadParameter as exc:
                problems.add(line, f"[defaults]: {key}: {exc.message}")
                break
    if not collect:
        problems.raise_any()
    return {name: values for name, values in result.items() if values}


def endpoint_options(cfg: Config, endpoint: Endpoint, command: click.Command,
                     ctx: click.Context) -> dict[str, Any]:
    """An endpoint's options as default_map entries for ``command`` (those it has)."""
    assert cfg.path is not None
    keys = _option_keys(command)
    problems = _Problems(cfg.path)
    values: dict[str, Any] = {}
    for key, (value, line) in endpoint.options.items():
        if key not in keys:
            continue  # e.g. SFTP settings for a command that only talks to S3
        param, fixed = keys[key]
        try:
            values[param.name or key] = _convert(param, fixed, value, cfg.path.parent, ctx)
        except click.BadParameter as exc:
            problems.add(line, f"endpoints.{endpoint.name}: {key}: {exc.message}")
    problems.raise_any()
    return values


# -- the CLI's hooks -------------------------------------------------------------------------

def apply_to(ctx: click.Context) -> None:
    """Load the config file and set the group's ``default_map`` (called by the ``main`` group's callback).

    A broken file is kept as an error for :func:`check_loaded` and :func:`current`: it is reported when a
    command runs, so that ``--help`` (which exits while the command's arguments are parsed) still works.
    """
    try:
        _apply(ctx)
    except ConfigError as exc:
        ctx.meta[_ERROR_KEY] = exc


def check_loaded(ctx: click.Context) -> None:
    """Before a command runs: the config file's problems, if it has any, stop it (exit 2)."""
    error: ConfigError | None = ctx.find_root().meta.get(_ERROR_KEY)
    if error is not None:
        fail_config(error)


def _apply(ctx: click.Context) -> None:
    path, required = config_path()
    assert path is not None
    problems = _Problems(path)
    cfg = load(path, required, problems)
    assert isinstance(ctx.command, click.Group)
    defaults = default_map(cfg, ctx.command, problems)
    problems.raise_any()  # every problem of the file at once
    ctx.meta[_META_KEY] = cfg
    if defaults:
        merged = dict(ctx.default_map or {})
        for name, values in defaults.items():
            merged[name] = {**values, **(merged.get(name) or {})}
        ctx.default_map = merged


def current(ctx: click.Context) -> Config:
    """The config loaded by the group (or loaded now, when a command runs on its own)."""
    root = ctx.find_root()
    error: ConfigError | None = root.meta.get(_ERROR_KEY)
    if error is not None:
        raise error
    cfg: Config | None = root.meta.get(_META_KEY)
    if cfg is None:
        cfg = root.meta[_META_KEY] = load()
    return cfg


def expand(cfg: Config, text: str) -> tuple[str, Endpoint | None]:
    """``NAME:PATH`` for a configured NAME -> the endpoint's URL with PATH appended; else unchanged."""
    if "://" in text:
        return text, None
    match = _REF_RE.match(text)
    if not match or match.group(1) not in cfg.endpoints:
        return text, None
    endpoint = cfg.endpoints[match.group(1)]
    return endpoint.expand(match.group(2)), endpoint


def location_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click ``callback=`` for SRC/DST arguments: expand named endpoints and take their options as defaults."""
    if ctx.resilient_parsing or value is None:
        return value

    try:
        cfg = current(ctx)
        if not cfg.endpoints:
            return value
        values = list(value) if isinstance(value, (tuple, list)) else [value]
        expanded = []
        for text in values:
            url, endpoint = expand(cfg, text)
            expanded.append(url)
            if endpoint is not None:
                _endpoint_defaults(ctx, cfg, endpoint)
    except UsageError as exc:
        fail_config(exc)
    return tuple(expanded) if isinstance(value, (tuple, list)) else expanded[0]


def _endpoint_defaults(ctx: click.Context, cfg: Config, endpoint: Endpoint) -> None:
    values = endpoint_options(cfg, endpoint, ctx.command, ctx)
    used: dict[str, str] = ctx.meta.setdefault("s3ferry.endpoint_options", {})
    current_map = dict(ctx.default_map or {})  # may be the group's dict: never change it in place
    for name, value in values.items():
        owner = used.get(name)
        if owner is not None and owner != endpoint.name and current_map.get(name) != value:
            raise UsageError(f"endpoints {owner} and {endpoint.name} both set {name} (to different values); "
                             f"one command takes one {name}: give it on the command line")
        used[name] = endpoint.name
        current_map[name] = value
    ctx.default_map = current_map


def complete_location(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion for SRC/DST: configured endpoint names (``NAME:``), then files."""
    from click.shell_completion import CompletionItem

    items: list[Any] = []
    try:
        cfg = load()
    except UsageError:
        cfg = Config()
    if "://" not in incomplete and ":" not in incomplete:
        items = [CompletionItem(f"{name}:", help=ep.url) for name, ep in sorted(cfg.endpoints.items())
                 if name.startswith(incomplete)]
    return [*items, CompletionItem(incomplete, type="file")]
