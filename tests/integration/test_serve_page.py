"""The status page of ``s3ferry serve`` in a real browser (headless Chromium driven by Playwright).

The page is behind the token (a login form turns it into a session cookie: never in a URL), lists the flows,
shows a delivery appear after "Run now" and after an S3 event posted to the intake, a failed delivery in the
retry queue, and after "Retry now" (the destination mended) the queue empties and the delivery appears.
Screenshots are checked non-blank; the one with the retry queue is what docs/serve.png shows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from s3ferry.demo import servers as testbed
from support.png import colors
from support.serve import new_token, push_flow, start_serve

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: set to a path to refresh the README's screenshot from this test (SERVE_SCREENSHOT=$PWD/docs/serve.png)
SCREENSHOT_ENV = "SERVE_SCREENSHOT"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Chromium is required: run `make test` (installs Debian's chromium as root)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS,
                                                            headless=True, viewport={"width": 1200, "height": 820})
        yield context
        context.close()


def shot(page: Page, path: Path) -> bytes:
    data = page.screenshot(path=str(path), full_page=True)
    assert len(data) > 5000 and colors(data) > 8, f"{path} looks blank"
    return data


def test_page_shows_deliveries_and_retries_the_queue(tmp_path: Path, browser: BrowserContext, s3: testbed.SeaweedServer,
                                                     ssh: testbed.SshServer, bucket: str,
                                                     s3_env: dict[str, str]) -> None:
    client, folder = s3.client(), ssh.root / f"inbox-{bucket}"
    client.put_object(Bucket=bucket, Key="out/first.csv", Body=b"id\n1\n")
    flows = tmp_path / "flows.toml"
    # a name that must be quoted in TOML and percent-encoded in the page's form actions
    # [serve.events]: the event intake is on (its senders use the serve token)
    flows.write_text(push_flow('"partner outbox"', bucket, s3.endpoint, ssh, folder) + "\n[serve.events]\n")
    token, token_file = new_token(tmp_path)
    served = start_serve(flows, tmp_path / "state", token, token_file)
    page = browser.new_page()
    try:
        # without a session: to the login form; a wrong token is refused; the right one opens the page
        page.goto(served.base + "/")
        assert page.url.endswith("/login")
        page.fill("#token", "not-the-token-at-all")
        page.click("#login")
        expect(page.locator(".error")).to_have_text("Wrong token.")
        page.fill("#token", token)
        page.click("#login")
        flow_row = page.locator('tr[data-flow="partner outbox"]')
        expect(flow_row).to_be_visible()
        assert token not in page.url
        expect(page.locator("#deliveries")).to_contain_text("first.csv", timeout=60_000)  # the run at start
        shot(page, tmp_path / "flows.png")
        # "Run now" after a new object: its delivery appears (the page refreshes itself)
        client.put_object(Bucket=bucket, Key="out/second.csv", Body=b"id\n2\n")
        flow_row.get_by_role("button", name="Run now").click()
        expect(page.locator("#deliveries")).to_contain_text("second.csv", timeout=60_000)
        assert (folder / "second.csv").read_bytes() == b"id\n2\n"
        # an S3 event (MinIO's webhook format) for a new object: its delivery appears without any button
        etag = client.put_object(Bucket=bucket, Key="out/by-event.csv", Body=b"id\n4\n")["ETag"].strip('"')
        event = {"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/out/by-event.csv", "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": "out/by-event.csv", "size": 5, "eTag": etag}}}]}
        assert served.call("POST", "/api/v1/events/minio", data=json.dumps(event).encode()).status == 202
        expect(page.locator("#deliveries")).to_contain_text("by-event.csv", timeout=30_000)
        assert (folder / "by-event.csv").read_bytes() == b"id\n4\n"
        # a delivery that fails lands in the retry queue, with its buttons
        shutil.move(folder, folder.with_name(folder.name + "-before"))
        folder.write_bytes(b"a file where the folder should be")
        client.put_object(Bucket=bucket, Key="out/third.csv", Body=b"id\n3\n")
        flow_row.get_by_role("button", name="Run now").click()
        queued = page.locator('#queue tr.queued[data-key="out/third.csv"]')
        expect(queued).to_be_visible(timeout=60_000)
        expect(page.locator("#failures")).to_contain_text("third.csv")
        expect(flow_row).to_have_class("state-failing", timeout=30_000)
        data = shot(page, tmp_path / "queue.png")
        if os.environ.get(SCREENSHOT_ENV):
            Path(os.environ[SCREENSHOT_ENV]).write_bytes(data)
        # mended, "Retry now": delivered, and the queue is empty
        folder.unlink()
        queued.get_by_role("button", name="Retry now").click()
        expect(page.locator("#queue")).to_contain_text("The retry queues are empty.", timeout=60_000)
        expect(page.locator("#deliveries")).to_contain_text("third.csv")
        assert (folder / "third.csv").read_bytes() == b"id\n3\n"
        shot(page, tmp_path / "retried.png")
        # the page's session does not open the API to other sites: a cookie POST without the CSRF token fails
        answer = page.request.post(served.base + "/api/v1/flows/partner%20outbox/trigger")
        assert answer.status == 403
    finally:
        page.close()
        served.stop()
