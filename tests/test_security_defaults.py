"""The shipped Streamlit configuration keeps the safe defaults the README promises."""

import tomllib
from pathlib import Path

import pytest

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


def test_uploads_over_the_configured_size_are_refused_by_default():
    """Streamlit's limit is enforced in the browser upload; decode_upload enforces the same one itself."""
    from app.inputs import InputError, decode_upload

    with pytest.raises(InputError, match=f"limit is {MAX_UPLOAD_MB} MB"):
        decode_upload(b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD_MB * 1024 * 1024))
