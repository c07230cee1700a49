"""Safe defaults (issue #19, item 7): no gunicorn control socket, private caching of credentialed answers,
a Content-Security-Policy on the HTML pages, a person's credits capped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import LiveServer


@pytest.mark.django_db(transaction=True)
def test_gunicorn_opens_no_control_socket(live_server_factory: Callable[..., LiveServer], tmp_path: Path) -> None:
    """gunicorn 25+ listens on $XDG_RUNTIME_DIR/gunicorn.ctl (else ~/.gunicorn/) unless told not to."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    server = live_server_factory(workers=1, env={"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)})
    try:
        assert "Serving the API" in server.output()
        assert "Control socket" not in server.output()
        assert list(runtime.iterdir()) == []
        assert not (tmp_path / ".gunicorn").exists()
    finally:
        server.stop()
