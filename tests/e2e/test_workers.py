"""`onewindow serve --workers N`: several processes behind one port, one view of the metrics."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from onewindow.settings import Settings
from tests.conftest import server_env, stop
from tests.e2e.conftest import serve

pytestmark = pytest.mark.e2e


def test_two_http_workers_serve_and_report_metrics_together(settings: Settings, tmp_path: Path) -> None:
    served = serve(server_env(settings, tmp_path), tmp_path / "serve.log", extra=["--workers", "2"])
    try:
        requests = 60
        with httpx.Client(base_url=served.base_url, timeout=5) as client:
            for _ in range(requests):
                assert client.get("/healthz").status_code == 200
            text = client.get("/metrics").text
        # Whichever process answered the scrape, it counts the requests both processes served.
        found = re.search(
            r'onewindow_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)', text
        )
        assert found, text[:2000]
        assert float(found.group(1)) == requests
        assert (tmp_path / "metrics").is_dir()
        assert len(list((tmp_path / "metrics").glob("*.db"))) >= 2  # one file per process
    finally:
        assert stop(served.child.process) == 0, served.child.output()
