"""Every test process sees 8 fake CPU devices, so sharding tests run on this CPU (must precede any jax import)."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import pytest  # noqa: E402


@pytest.fixture
def covered():
    """fig -> (fraction of its width, of its height) spanned by its visible axes: a blank half or row shows."""

    def spans(fig) -> tuple[float, float]:
        boxes = [ax.get_position() for ax in fig.axes if ax.axison]
        return max(b.x1 for b in boxes) - min(b.x0 for b in boxes), max(b.y1 for b in boxes) - min(b.y0 for b in boxes)

    return spans
