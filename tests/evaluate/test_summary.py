"""The summary's figures."""

import pytest

from ikl_zoo.evaluate.summary import wilson_interval


def test_wilson_interval_is_honest_at_the_edges():
    assert wilson_interval(7, 20) == pytest.approx((0.1812, 0.5671), abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
