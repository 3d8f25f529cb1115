"""cp -r without a server: --include/--exclude order, and which folders below the root are checked for links."""

from __future__ import annotations

from s3ferry.cli.app import filter_order
from s3ferry.core.storage import below_root, tree_root
from s3ferry.operations.tree import Filter, selected


def test_an_include_first_means_only_these() -> None:
    filters = filter_order(["*.csv"], [], ["cp", "-r", "--include", "*.csv", "a", "b"])
    assert selected("x.csv", filters) and not selected("x.tmp", filters)
    both = filter_order(["*.csv"], ["skip*"], ["cp", "--include", "*.csv", "--exclude", "skip*"])
    assert selected("a.csv", both) and not selected("skip.csv", both) and not selected("a.txt", both)


def test_filters_last_match_decides() -> None:
    only_csv = [Filter("*", include=False), Filter("*.csv", include=True)]
    assert selected("sub/x.csv", only_csv) and not selected("a.tmp", only_csv)
    no_tmp = [Filter("*.tmp", include=False)]
    assert selected("a.csv", no_tmp) and not selected("deep/a.tmp", no_tmp)
    assert selected("anything", [])


def test_the_folders_checked_are_those_below_the_root_given() -> None:
    assert tree_root("dest/", "dest/sub/x.bin") == "dest"
    assert below_root("dest", "dest/sub/deep/x.bin") == ["dest/sub", "dest/sub/deep"]
    assert below_root(".", "./sub/x.bin") == ["./sub"]
    assert below_root("/srv/in", "/srv/in/x.bin") == []
    # Nothing is outside "/" (Dask workers root their endpoints there), and an unrelated path has no root.
    assert tree_root("/", "/srv/in/x.bin") is None and tree_root("dest", "other/x.bin") is None
    assert below_root(None, "dest/sub/x.bin") == []
