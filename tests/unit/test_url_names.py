"""Hostile and tricky names (issue 14) in URLs and globs, without a server: paths are literal in every scheme
but http(s); a source's last component may be a pattern, expanded as bash does without failglob."""

from __future__ import annotations

import pytest

from s3ferry.core.errors import UsageError
from s3ferry.core.storage import Entry
from s3ferry.core.urls import parse, redact
from s3ferry.observe.logs import scrub
from s3ferry.operations.globs import expand, glob_of
from support.helpers import HOSTILE

# -- the parsing rules (pure) -----------------------------------------------------------------------


def test_every_literal_scheme_keeps_the_path_as_typed() -> None:
    for name in (*HOSTILE, "lead space .bin", "ünï.csv", "x%2Fy", "%", "a;b=c&d"):
        assert parse(f"s3://bucket/dir/{name}").path == f"dir/{name}"
        assert parse(f"sftp://me@host:2222/dir/{name}").path == f"/dir/{name}"
        assert parse(f"ftp://host/dir/{name}").path == f"/dir/{name}"
        assert parse(f"ftps://me@host/dir/{name}").path == f"/dir/{name}"
        assert parse(f"file:///dir/{name}").path == f"/dir/{name}"
        assert parse(f"/dir/{name}").path == f"/dir/{name}"
        assert str(parse(f"s3://bucket/dir/{name}")) == f"s3://bucket/dir/{name}"
        assert str(parse(f"sftp://me@host/dir/{name}")) == f"sftp://me@host/dir/{name}"


def test_s3_key_is_everything_after_the_buckets_slash() -> None:
    assert parse("s3://bucket//lead").path == "/lead"  # as the AWS CLI: the key is "/lead"
    assert parse("s3://bucket/a?b#c").path == "a?b#c"
    assert parse("s3://bucket").path == parse("s3://bucket/").path == ""
    assert parse("S3://bucket/Key").path == "Key"


def test_user_name_is_percent_decoded_but_the_path_is_not() -> None:
    loc = parse("sftp://me%40corp@host/in%40box/x%20y")
    assert (loc.user, loc.host, loc.path) == ("me@corp", "host", "/in%40box/x%20y")
    assert str(loc) == "sftp://me%40corp@host/in%40box/x%20y"
    assert parse("ftp://a%3Ab@host/").user == "a:b"


def test_only_http_urls_have_a_query_string() -> None:
    """http(s): a real URL, decoded path, query kept for the request and out of every display form.
    Everywhere else a ``?`` is a character of a name, shown as it is."""
    loc = parse("https://h.example/dir/a%20b.bin?X-Amz-Signature=abc")
    assert (loc.path, loc.query) == ("/dir/a b.bin", "X-Amz-Signature=abc")
    assert "abc" not in str(loc) and loc.url.endswith("/dir/a%20b.bin?X-Amz-Signature=abc")
    assert redact("https://h/x?sig=1") == "https://h/x?***"
    assert scrub("GET https://h/x?X-Amz-Signature=abc") == "GET https://h/x?***"
    assert parse("s3://bucket/q?mark.bin").path == "q?mark.bin"
    assert redact("s3://bucket/q?mark.bin") == "s3://bucket/q?mark.bin"
    assert redact("sftp://u:pw@h/q?x") == "sftp://u:***@h/q?x"
    assert scrub("no such file: sftp://h/q?mark.bin") == "no such file: sftp://h/q?mark.bin"


def test_query_or_fragment_characters_before_the_path_are_refused() -> None:
    for text in ("sftp://h?x/y", "sftp://h#x/y", "s3://bu?ck/x", "sftp://u:pw?x@h/y"):
        with pytest.raises(UsageError) as info:
            parse(text)
        assert "pw" not in str(info.value), text  # the password is refused, and not shown


def test_only_the_last_component_of_a_literal_source_is_a_pattern() -> None:
    glob = glob_of(parse("sftp://h/out/*.csv"))
    assert glob is not None and (glob.folder.path, glob.pattern) == ("/out/", "*.csv")
    glob = glob_of(parse("s3://bucket/q[?]mark.bin"))
    assert glob is not None and (glob.folder.path, glob.pattern) == ("", "q[?]mark.bin")
    glob = glob_of(parse("*.csv"))
    assert glob is not None and (glob.folder.path, glob.pattern) == ("", "*.csv")
    for text in ("s3://bucket/d*r/x.bin", "s3://bucket/d*r/", "https://h/x.bin?a=*", "https://h/*.bin",
                 "sftp://h/plain.bin", "s3://bucket/a%41.bin"):
        assert glob_of(parse(text)) is None, text


def test_expansion_follows_the_shell() -> None:
    folder = [Entry(name, 1) for name in ("q?mark.bin", "qXmark.bin", "br[1].bin", "star*.bin", "starry.bin",
                                          ".hidden.bin", "a.csv")]

    def names(pattern: str) -> list[str]:
        return [entry.path for entry in expand(folder, pattern)]

    assert names("q?mark.bin") == ["q?mark.bin", "qXmark.bin"]
    assert names("q[?]mark.bin") == ["q?mark.bin"]  # a bracketed wildcard is literal
    assert names("star[*].bin") == ["star*.bin"]
    assert names("star*.bin") == ["star*.bin", "starry.bin"]
    assert names("br[1].bin") == ["br[1].bin"]  # no br1.bin: taken literally, as bash without failglob
    assert names("br[[]1].bin") == ["br[1].bin"]
    assert names("*.bin") == ["br[1].bin", "q?mark.bin", "qXmark.bin", "star*.bin", "starry.bin"]
    assert names(".*") == [".hidden.bin"]  # a leading dot is matched only explicitly
    assert names("*.txt") == [] and names("[") == []


def test_unsafe_name_survives_copy_and_pickle() -> None:
    """A refused name travels in reports (deep-copied) and to Dask workers (pickled) with its reason."""
    import copy
    import pickle

    from s3ferry.core.urls import UnsafeName

    name = UnsafeName("a/b", "a name in a folder listing cannot hold '/'")
    for again in (copy.copy(name), copy.deepcopy(name), pickle.loads(pickle.dumps(name))):
        assert isinstance(again, UnsafeName)
        assert (str(again), again.reason) == ("a/b", name.reason)
