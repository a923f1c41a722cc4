"""What the harness makes of an adapter's return value and exceptions (soebench.run.generate._call)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from soebench.run.generate import _call


class Returns:
    """An adapter returning ``value`` for any batch, counting its calls."""

    name = "returns"

    def __init__(self, value):
        self.value = value
        self.calls = 0

    def inpaint(self, requests):
        self.calls += 1
        return self.value(requests) if callable(self.value) else self.value

    def cache_token(self):
        return None


@pytest.mark.parametrize("value, match", [
    (None, "adapter returned None, expected a list of images"),
    (lambda reqs: {r.sample_id: r.image for r in reqs}, "adapter returned a dict, expected a list of images"),
    (lambda reqs: reqs[0].image, "adapter returned one array of shape (40, 48, 3)"),
    (7, "adapter returned an int, expected a list"),
])
def test_a_return_value_that_is_no_list_is_one_clear_error_without_retries(requests3, value, match):
    adapter = Returns(value)
    results = _call(adapter, requests3)
    assert [r.sample_id for r in results] == [r.sample_id for r in requests3]
    assert all(not r.ok and match in r.error for r in results)
    assert adapter.calls == 1  # not retried sample by sample, as an exception would be


def test_a_stack_and_a_generator_are_lists_of_outputs(requests3):
    stack = np.stack([r.image for r in requests3])
    assert all(r.ok for r in _call(Returns(stack), requests3))
    assert all(r.ok for r in _call(Returns(lambda reqs: (r.image for r in reqs)), requests3))


def test_sys_exit_in_an_adapter_is_a_per_sample_error_not_the_end_of_the_run(requests3):
    def exits_on_blue(requests):
        if any("blue" in r.prompt for r in requests):
            sys.exit(3)
        return [r.image for r in requests]

    results = _call(Returns(exits_on_blue), requests3)
    assert results[0].ok and results[2].ok
    assert not results[1].ok and results[1].error == "adapter called sys.exit(3)"
    assert _call(Returns(lambda reqs: sys.exit()), requests3[:1])[0].error == "adapter called sys.exit()"


def test_keyboard_interrupt_still_ends_the_run(requests3):
    def interrupted(requests):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _call(Returns(interrupted), requests3)
