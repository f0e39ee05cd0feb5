"""Hypothesis profiles: no deadline (autograd's first call is slow), derandomized in CI so a
green run stays green; `HYPOTHESIS_PROFILE=dev` explores more examples locally."""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.register_profile("dev", parent=settings.get_profile("default"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))
