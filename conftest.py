"""Root pytest configuration: quiet environment first, then the shared fixtures."""

import os

from tests.support.processes import QUIET_ENV

# Before dspy, litellm or mlflow are imported anywhere in the test session.
for _key, _value in QUIET_ENV.items():
    os.environ.setdefault(_key, _value)

pytest_plugins = ["tests.support.fixtures"]
