from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses


@pytest.fixture
def mocked_responses() -> Iterator[responses.RequestsMock]:
    """Activate `responses` (which globus_sdk.testing registers into) for a test."""
    responses.start()
    try:
        yield responses.mock
    finally:
        responses.stop()
        responses.reset()
