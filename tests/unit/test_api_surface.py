"""The Python API's surface: dir(s3ferry) is the public API, overwrite takes booleans, and the config file
applies to the API as to the command line (local files only: no servers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import s3ferry
from s3ferry.core.errors import UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.operations.settings import ConfigError, prepare

ENTRY_POINTS = ("copy", "acopy", "copy_tree", "acopy_tree", "copy_glob", "acopy_glob", "pull", "apull", "push",
                "apush")


def test_dir_shows_only_the_public_api() -> None:
    names = dir(s3ferry)
    for helper in ("Any", "TYPE_CHECKING", "annotations", "_LAZY", "core", "operations"):
        assert helper not in names
    assert names == sorted(s3ferry.__all__)
    for name in (*ENTRY_POINTS, "TransferResult", "TreeResult", "JobReport"):
        assert name in s3ferry.__all__
    for name in s3ferry.__all__:
        assert getattr(s3ferry, name) is not None  # each one resolves
    assert (Path(s3ferry.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize(("given", "mode"), [(True, "always"), (False, "never"), ("changed", "changed"),
                                             ("always", "always"), ("never", "never")])
def test_overwrite_takes_booleans_and_modes(given: object, mode: str) -> None:
    assert prepare("cp", "a", "b", None, {"overwrite": given}, False).options.overwrite == mode


def test_overwrite_true_copies_over_a_matching_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.txt", tmp_path / "b.txt"
    src.write_text("same\n")
    assert not s3ferry.copy(src.as_posix(), dst.as_posix(), config=False).skipped
    os.utime(dst, (src.stat().st_atime, src.stat().st_mtime))
    assert s3ferry.copy(src.as_posix(), dst.as_posix(), config=False).skipped  # it matches
    assert not s3ferry.copy(src.as_posix(), dst.as_posix(), config=False, overwrite=True).skipped
    dst.write_text("other\n")
    assert s3ferry.copy(src.as_posix(), dst.as_posix(), config=False, overwrite=False).skipped
    assert dst.read_text() == "other\n"


@pytest.mark.parametrize("bad", ["sometimes", 1, None])
def test_an_unknown_overwrite_says_what_is_accepted(tmp_path: Path, bad: object) -> None:
    with pytest.raises(UsageError) as caught:
        s3ferry.copy((tmp_path / "a").as_posix(), (tmp_path / "b").as_posix(), config=False, overwrite=bad)
    message = str(caught.value)
    for accepted in ("True", "False", "'always'", "'never'", "'changed'", repr(bad)):
        assert accepted in message


def test_defaults_and_endpoint_options_apply_and_keywords_win(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[defaults]\npart_size = "16MiB"\nupload_streams = 3\n\n'
                   '[endpoints.raw]\nurl = "s3://raw/in"\nendpoint_url = "http://127.0.0.1:1"\nregion = "eu-1"\n')
    monkeypatch.setenv("S3FERRY_CONFIG", str(cfg))
    call = prepare("cp", "x.bin", "raw:2026/x.bin", None, {}, None)  # the CLI's discovery
    assert call.dst == "s3://raw/in/2026/x.bin"
    assert call.options.part_size == 16 * 2**20 and call.options.upload_streams == 3
    assert call.options.s3.endpoint_url == "http://127.0.0.1:1" and call.options.s3.region == "eu-1"
    call = prepare("cp", "x.bin", "raw:x.bin", TransferOptions(upload_streams=7),
                   {"endpoint_url": "http://127.0.0.1:2", "part_size": 32 * 2**20}, cfg)
    assert call.options.s3.endpoint_url == "http://127.0.0.1:2" and call.options.s3.region == "eu-1"
    assert call.options.part_size == 32 * 2**20 and call.options.upload_streams == 7
    call = prepare("cp", "x.bin", "raw:x.bin", None, {}, False)  # no config: nothing expands
    assert call.dst == "raw:x.bin" and call.options == TransferOptions()


def test_a_bad_value_in_the_file_is_named_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[defaults]\nupload_streams = "many"\npart_sise = "8MiB"\n')
    with pytest.raises(ConfigError) as caught:
        prepare("cp", "a", "b", None, {}, cfg)
    assert f"{cfg}:2" in caught.value.lines[0] and "whole number" in caught.value.lines[0]
    assert f"{cfg}:3" in caught.value.lines[1] and "part_size" in caught.value.lines[1]


def test_tree_filters_from_keywords_and_from_the_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for name in ("a.csv", "b.csv", "c.tmp"):
        (src / "d" / name).write_text(name)
    tree = s3ferry.copy_tree(src.as_posix(), (tmp_path / "kw").as_posix(), config=False, include=["*.csv"],
                             exclude="*/b.csv")
    assert isinstance(tree, s3ferry.TreeResult)
    assert sorted(p.name for p in (tmp_path / "kw" / "d").iterdir()) == ["a.csv"]
    cfg = tmp_path / "config.toml"
    cfg.write_text('[defaults]\nexclude = ["*.tmp"]\n')
    s3ferry.copy_tree(src.as_posix(), (tmp_path / "file").as_posix(), config=cfg)
    assert sorted(p.name for p in (tmp_path / "file" / "d").iterdir()) == ["a.csv", "b.csv"]
    s3ferry.copy_tree(src.as_posix(), (tmp_path / "given").as_posix(), config=cfg, filters=[])  # given: wins
    assert sorted(p.name for p in (tmp_path / "given" / "d").iterdir()) == ["a.csv", "b.csv", "c.tmp"]
