"""The shipped Streamlit configuration keeps the safe defaults the README promises."""

import tomllib
from pathlib import Path

from app.inputs import MAX_UPLOAD_MB

CONFIG = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())


def test_app_binds_to_localhost_only():
    assert CONFIG["server"]["address"] == "127.0.0.1"


def test_xsrf_protection_stays_on_and_uploads_are_bounded():
    assert CONFIG["server"]["enableXsrfProtection"] is True
    assert CONFIG["server"]["maxUploadSize"] == MAX_UPLOAD_MB <= 10


def test_no_tracebacks_on_the_page():
    assert CONFIG["client"]["showErrorDetails"] == "none"


def test_usage_statistics_are_not_sent():
    assert CONFIG["browser"]["gatherUsageStats"] is False
