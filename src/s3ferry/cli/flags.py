"""The click options of every command, made from the option table (:mod:`s3ferry.core.optionspec`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from s3ferry.core.errors import UsageError
from s3ferry.core.options import OptionError, TransferOptions, parse_size, split_pairs
from s3ferry.core.optionspec import OPTIONS, Option, build_transfer_options, named, options_of
from s3ferry.core.units import age_seconds

F = TypeVar("F", bound=Callable[..., Any])


class SizeType(click.ParamType[int, Any]):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_size(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


class AgeType(click.ParamType[float, Any]):
    name = "age"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            return age_seconds(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


_TYPES: dict[str, Callable[[Option], Any]] = {
    "int": lambda o: int,
    "float": lambda o: float,
    "size": lambda o: SizeType(),
    "age": lambda o: AgeType(),
    "path": lambda o: click.Path(path_type=Path),
    "file": lambda o: click.Path(path_type=Path, dir_okay=False),
    "choice": lambda o: click.Choice(o.choices),
}


def click_option(option: Option, command: str) -> Callable[[F], F]:
    """``option`` as ``command`` offers it."""
    flags = list(option.flags)
    if option.kind == "switch":
        flags = [f"{option.flag}/--no-{option.flag[2:]}"]
    kwargs: dict[str, Any] = {"help": option.help_for(command), "metavar": option.metavar,
                              "multiple": option.multiple, "envvar": option.envvar}
    if option.kind in _TYPES:
        kwargs["type"] = _TYPES[option.kind](option)
    if option.kind == "count":
        kwargs["count"] = True
    elif option.flag_value is not None:
        kwargs["flag_value"] = option.flag_value
    elif option.kind == "flag":
        kwargs["is_flag"] = True
    default = option.default_for(command)
    if option.kind == "switch" or default is not None:
        kwargs["default"] = default
        kwargs["show_default"] = option.show_default
    return click.option(*flags, option.param, **kwargs)


def options(command: str) -> Callable[[F], F]:
    """Decorate ``command``'s function with every option the table gives it (listed in the table's order)."""
    def decorate(fn: F) -> F:
        for option in reversed(options_of(command)):
            fn = click_option(option, command)(fn)
        return fn
    return decorate


#: an option's name -> how the command line spells it
FLAG_OF = {o.name: o.flag for o in OPTIONS}


def transfer_options(params: Mapping[str, Any]) -> TransferOptions:
    """The typed options behind a command's flags (click hands them over by name); a bad value is named by
    its flag."""
    values = dict(params)
    for option in OPTIONS:
        if option.kind == "pairs" and option.param in values:
            values[option.param] = split_pairs(values[option.param], option.flag)
    try:
        built = build_transfer_options(values)
        built.s3.sse_c_key(), built.s3.sse_c_key(source=True)  # a bad key file fails before anything starts
    except OptionError as exc:
        raise named(exc, FLAG_OF) from None
    return built
