"""Against a deployed service (staging tier). Skipped unless STAGING_URL is set."""

import os
import urllib.request

import pytest

STAGING_URL = os.environ.get("STAGING_URL", "")

pytestmark = [
    pytest.mark.staging,
    pytest.mark.skipif(not STAGING_URL, reason="set STAGING_URL to run the staging tests"),
]


def test_staging_answers():
    with urllib.request.urlopen(STAGING_URL, timeout=10) as response:
        assert response.status == 200
