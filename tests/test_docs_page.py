"""``/docs`` renders offline in a real browser: Swagger UI's files come from the server, not a CDN."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytest.importorskip("fastapi_offline")
httpx = pytest.importorskip("httpx")

from test_serve import running_server  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a root user on a machine without a network: no sandbox, no background connections.
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--virtual-time-budget=15000"]


def test_the_docs_page_loads_nothing_from_outside(bert_bundle, tmp_path):
    with running_server(bert_bundle, tmp_path / "home") as (url, _):
        page = httpx.get(f"{url}/docs", timeout=10).text
        links = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert links and all(link.startswith("/") for link in links), links  # no CDN, no other host
        for link in links:
            assert httpx.get(f"{url}{link}", timeout=10).status_code == 200, link


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_headless_chromium_renders_the_predict_operation(bert_bundle, tmp_path):
    with running_server(bert_bundle, tmp_path / "home") as (url, _):
        profile = ["--user-data-dir=" + str(tmp_path / "profile")]
        dom = subprocess.run([CHROMIUM, *HEADLESS, *profile, "--dump-dom", f"{url}/docs"],
                             capture_output=True, text=True, timeout=120).stdout
        shot = tmp_path / "docs.png"
        subprocess.run([CHROMIUM, *HEADLESS, *profile, "--window-size=1280,1400", f"--screenshot={shot}",
                        f"{url}/docs"], capture_output=True, timeout=120)
    assert 'class="opblock-summary-path"' in dom and 'data-path="/predict"' in dom, dom[-2000:]
    for route in ("/health", "/ready", "/info", "/metrics"):
        assert f'data-path="{route}"' in dom
    assert shot.read_bytes()[:4] == b"\x89PNG"
