"""Shared fixtures. Helpers for waiting on conditions live in tests/waiting.py."""

import pytest

# fixture modules that test files load with ``pytest_plugins`` or import: rewrite their asserts too
pytest.register_assert_rewrite("mosquitto", "modem_fixtures", "store_fixtures", "daemon_helpers", "http_fixtures",
                              "webhook_receiver", "config_errors")


@pytest.fixture(autouse=True, scope="session")
def _config_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The commands' config cache (``appliance.config_cache``) of every test and of the processes
    they start goes to a directory of the test run, not the user's ``~/.cache``."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
