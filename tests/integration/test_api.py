"""The Python API as the command line's equal, against real SeaweedFS: the config file's endpoints and
defaults apply (keyword arguments win), pull and push run through it, and the README's examples run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import s3ferry
from s3ferry.demo import servers as testbed
from support.helpers import MiB, object_sha256, write_random

README = Path(__file__).resolve().parents[2] / "README.md"


def api_examples() -> list[str]:
    """Every ```python block of the README's "Python API" section, in order (each preceded by blank
    lines, so that a failure's traceback gives the README's own line numbers)."""
    text = README.read_text(encoding="utf-8")
    heading = re.search(r"\n(#+) Python API\n", text)
    assert heading is not None, "the README has no Python API section"
    start = heading.start()
    following = re.compile(r"\n#{1," + str(len(heading.group(1))) + "} ").search(text, heading.end())
    end = following.start() if following is not None else len(text)
    return ["\n" * text.count("\n", 0, m.start(1)) + m.group(1)
            for m in re.finditer(r"```python\n(.*?)```", text[:end], re.DOTALL) if m.start() > start]


def test_the_readme_examples_run(tmp_path: Path, s3: testbed.SeaweedServer, s3_env: dict[str, str], bucket: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = api_examples()
    assert len(blocks) >= 4
    text = "\n".join(blocks)
    for name in ("copy(", "acopy(", "copy_tree(", "copy_glob(", "pull(", "push(", "s3://"):
        assert name in text, f"no example of {name}"
    monkeypatch.setenv("WORK", str(tmp_path / "work"))
    monkeypatch.setenv("BUCKET", bucket)
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in blocks:  # one namespace: the examples build on each other, as a reader runs them
        exec(compile(block, str(README), "exec"), namespace)  # the README's own examples
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert {"in/a.csv", "raw/2026/b.csv", "pulled/2026/a.csv", "pulled/2026/b.csv"} <= keys


def raw_endpoint(config: Path, bucket: str, endpoint_url: str, defaults: str = "") -> None:
    config.write_text(f'[defaults]\n{defaults}\n[endpoints.raw]\nurl = "s3://{bucket}/raw"\n'
                      f'endpoint_url = "{endpoint_url}"\n')


def test_a_named_endpoint_supplies_its_options(config: Path, tmp_path: Path, s3: testbed.SeaweedServer,
                                                s3_env: dict[str, str], bucket: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # only the config file knows where S3 is
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    raw_endpoint(config, bucket, s3.endpoint, 'part_size = "5MiB"\nchecksum = "sha256"')
    (tmp_path / "data").mkdir()
    src = tmp_path / "data" / "twelve.bin"
    digest = write_random(src, 12 * MiB)
    result = s3ferry.copy(str(src), "raw:x/twelve.bin")  # found as the CLI finds it: S3FERRY_CONFIG
    assert isinstance(result, s3ferry.TransferResult)
    assert result.destination == f"s3://{bucket}/raw/x/twelve.bin"
    assert result.parts == 3 and result.part_size == 5 * MiB and result.checksum_algorithm == "sha256"
    assert object_sha256(s3, bucket, "raw/x/twelve.bin") == digest
    # keyword arguments win over [defaults] and the endpoint
    result = s3ferry.copy(str(src), "raw:x/again.bin", part_size=8 * MiB, checksum="crc32c")
    assert result.parts == 2 and result.checksum_algorithm == "crc32c"
    tree = s3ferry.copy_tree(str(src.parent), "raw:tree/", transfers=2)
    assert isinstance(tree, s3ferry.TreeResult) and [f.destination for f in tree.copied] == [
        f"s3://{bucket}/raw/tree/twelve.bin"]


def test_keyword_endpoint_url_wins_over_the_endpoint(config: Path, tmp_path: Path, s3: testbed.SeaweedServer,
                                                      s3_env: dict[str, str], bucket: str) -> None:
    raw_endpoint(config, bucket, "http://127.0.0.1:9")  # nothing listens there
    src = tmp_path / "small.txt"
    src.write_text("hello\n")
    with pytest.raises(s3ferry.S3FerryError):
        s3ferry.copy(str(src), "raw:small.txt", retries=0)
    result = s3ferry.copy(str(src), "raw:small.txt", endpoint_url=s3.endpoint)
    assert result.destination == f"s3://{bucket}/raw/small.txt"
    assert s3.client().get_object(Bucket=bucket, Key="raw/small.txt")["Body"].read() == b"hello\n"


def test_pull_and_push_through_the_api(config: Path, tmp_path: Path, s3: testbed.SeaweedServer,
                                        s3_env: dict[str, str], bucket: str) -> None:
    raw_endpoint(config, bucket, s3.endpoint, 'archive = ".sent"')
    drop = tmp_path / "drop"
    (drop / "d").mkdir(parents=True)
    (drop / "d" / "one.csv").write_text("1\n")
    (drop / "d" / "skip.tmp").write_text("x\n")
    report = s3ferry.pull(str(drop), "raw:in/", exclude=["*.tmp"])
    assert isinstance(report, s3ferry.JobReport) and report.kind == "pull"
    assert report.exit_code == 0 and report.copied == ["d/one.csv"]
    assert (drop / "d" / ".sent" / "one.csv").exists()  # [defaults] archive = ".sent"
    assert (drop / "d" / "skip.tmp").exists()
    inbox = tmp_path / "inbox"
    report = s3ferry.push("raw:in/", str(inbox), transfers=1)
    assert report.kind == "push" and report.exit_code == 0 and report.copied == ["d/one.csv"]
    assert (inbox / "d" / "one.csv").read_text() == "1\n"
    assert s3ferry.push(f"s3://{bucket}/raw/in/", str(inbox)).copied == []
