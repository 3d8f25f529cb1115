"""Metrics (scraped during a real transfer, pushed to a real Pushgateway), JSON logs, progress lines."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from s3ferry.demo import servers as testbed
from support.helpers import MiB, pull_flow, run_cli, sftp_flags, write_random


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


@pytest.mark.usefixtures("s3_env")
def test_metrics_scraped_during_a_transfer(ssh: testbed.SshServer, bucket: str) -> None:
    src = ssh.root / "metered.bin"
    write_random(src, 160 * MiB)
    port = testbed.free_port()
    args = [str(Path(sys.executable).with_name("s3ferry")), "cp", ssh.url(src), f"s3://{bucket}/m.bin",
            "--metrics-port", str(port), "--read-streams", "1", "--upload-streams", "1", *sftp_flags(ssh)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[dict] = []
    try:
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline:
            with contextlib.suppress(OSError):  # not listening yet, or the process just ended
                seen.append(scrape(f"http://127.0.0.1:{port}/metrics"))
            time.sleep(0.1)
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    moving = [s for s in seen if 0 < value(s, "s3ferry_transferred_bytes_total", direction="sftp_to_s3") < 160 * MiB]
    assert moving, "no scrape caught the transfer in flight"
    last = seen[-1]
    assert value(last, "s3ferry_parts_total", result="stored") >= 1
    assert 0 < value(last, "s3ferry_resident_memory_bytes") < 400e6
    assert value(last, "s3ferry_disk_written_bytes") < 1 * MiB
    assert any(value(s, "s3ferry_throughput_bytes_per_second") > 0 for s in moving)


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    binary = "/usr/bin/prometheus-pushgateway"
    if not os.access(binary, os.X_OK):
        pytest.fail("prometheus-pushgateway is required: run `make test` (installs it through apt as root)")
    port = testbed.free_port()
    log = open(tmp_path / "pushgateway.log", "wb")  # noqa: SIM115 - closed below
    # Its own persistence file: Debian's build persists to a shared default file, so a fresh gateway would
    # otherwise start with every earlier test run's series.
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}",
                             f"--persistence.file={tmp_path / 'pushgateway.data'}"], stdout=log, stderr=log)
    try:
        testbed.wait_for_port(port, 20, proc)  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.mark.usefixtures("s3_env")
def test_metrics_pushed_to_a_pushgateway(tmp_path: Path, bucket: str, pushgateway: str) -> None:
    src = tmp_path / "pushed.bin"
    write_random(src, 20 * MiB + 5)
    result = run_cli("cp", str(src), f"s3://{bucket}/p.bin", "--pushgateway", pushgateway, "--no-progress")
    assert result.code == 0, result.stderr
    samples = scrape(f"{pushgateway}/metrics")
    assert value(samples, "s3ferry_transferred_bytes_total", job="s3ferry", direction="local_to_s3") == 20 * MiB + 5
    assert value(samples, "s3ferry_files_total", job="s3ferry", result="copied") == 1
    assert value(samples, "s3ferry_disk_written_bytes", job="s3ferry") < 1 * MiB


@pytest.mark.usefixtures("s3_env")
def test_run_pushes_each_flows_own_series(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer,
                                          pushgateway: str) -> None:
    """Under `run`, every series keeps its flow's name at the Pushgateway (the grouping key must not
    replace it with "run"): the per-flow alerts tell flows apart."""
    flows = []
    for name in ("alpha", "beta"):
        drop = tmp_path / f"drop-{name}"
        drop.mkdir()
        write_random(drop / f"{name}.csv", 1000)
        flows.append(pull_flow(name, str(drop) + "/", bucket, s3.endpoint).replace("/in/", f"/in-{name}/"))
    path = tmp_path / "flows.toml"
    path.write_text("\n".join(flows))
    result = run_cli("run", "--once", "--pushgateway", pushgateway, "--push-interval", "0", str(path))
    assert result.code == 0, result.stderr
    samples = scrape(f"{pushgateway}/metrics")
    for name in ("alpha", "beta"):
        assert value(samples, "s3ferry_files_total", job="s3ferry", result="copied", flow=name) == 1
        assert value(samples, "s3ferry_flow_last_success_timestamp_seconds", job="s3ferry", flow=name) > 0


@pytest.mark.usefixtures("s3_env")
def test_quiet_periodic_progress_line_when_not_a_terminal(tmp_path: Path, bucket: str) -> None:
    src = tmp_path / "slow.bin"
    write_random(src, 12 * MiB)
    import logging

    from s3ferry.cli.progress import LogProgress

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("s3ferry.progress").addHandler(handler)
    try:
        listener = LogProgress(interval=0.0)
        listener.started("slow.bin", 100)
        listener.advanced(40)
    finally:
        logging.getLogger("s3ferry.progress").removeHandler(handler)
    assert records and "slow.bin" in records[0] and "40%" in records[0]
    result = run_cli("cp", str(src), f"s3://{bucket}/slow.bin")  # stderr is a pipe: no bar, no escape codes
    assert result.code == 0 and "\x1b[" not in result.stderr
