# Shared fixtures of the integration tests. Image, registry and user fixtures live in
# fixtures_images.py (see its docstring); add other fixtures below or in their own module.
from fixtures_images import *  # noqa: F401,F403

pytest_plugins = []
from fixtures_apiserver import *  # noqa: F401,F403,E402
