"""Every test process sees 8 fake CPU devices, so sharding tests run on this CPU (must precede any jax import)."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
