"""Fixtures of the metrics tests: tiny networks saved to disk once per session."""

from __future__ import annotations

import pytest

from tests.helpers.tiny_nets import make_tiny_clip, make_tiny_inception


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """``(config_json_path, weights_path)`` of the tiny open_clip model."""
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def tiny_inception_path(tmp_path_factory):
    return make_tiny_inception(tmp_path_factory.mktemp("inception"), dim=16)
