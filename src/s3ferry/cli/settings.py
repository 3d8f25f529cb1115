"""The config file for the command line: the click glue around :mod:`s3ferry.operations.settings` (which
reads the file, checks it and expands ``NAME:PATH`` for the Python API too).

Here: ``[defaults]`` become every command's ``default_map`` (checked by each option's click type), a named
endpoint's options become the defaults of the command that uses it, and a broken file is reported (exit 2)
when a command runs, never when ``--help`` is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import click

from s3ferry.cli.common import fail
from s3ferry.core.errors import UsageError
from s3ferry.operations.settings import (
    ENDPOINT_KEYS,
    Config,
    ConfigError,
    Endpoint,
    Problems,
    config_path,
    did_you_mean,
    expand,
    load,
)

__all__ = ["ENDPOINT_KEYS", "Config", "ConfigError", "Endpoint", "apply_to", "check_loaded", "complete_location",
           "config_path", "current", "default_map", "expand", "fail_config", "load", "location_callback"]

_META_KEY = "s3ferry.cli.settings"
_ERROR_KEY = "s3ferry.cli.settings.error"


def fail_config(exc: UsageError) -> NoReturn:
    """Report a config (or location) problem: each of the file's problems on its line, then the error."""
    for line in exc.lines if isinstance(exc, ConfigError) else ():
        click.echo(line, err=True)
    fail(exc, False)


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


def default_map(cfg: Config, group: click.Group, problems: Problems | None = None) -> dict[str, dict[str, Any]]:
    """``[defaults]`` as click's default_map for every command of ``group`` that has the option."""
    if cfg.path is None:
        return {}
    collect = problems is not None
    problems = problems if problems is not None else Problems(cfg.path)
    commands = {name: (cmd, _option_keys(cmd)) for name, cmd in group.commands.items()}
    result: dict[str, dict[str, Any]] = {name: {} for name in commands}
    every_key = sorted({k for _, keys in commands.values() for k in keys})
    for key, (value, line) in cfg.defaults.items():
        users = [(name, keys[key]) for name, (_, keys) in commands.items() if key in keys]
        if not users:
            problems.add(line, f"[defaults]: unknown option {key!r}{did_you_mean(key, every_key)}")
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
    problems = Problems(cfg.path)
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
    problems = Problems(path)
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
