"""Shared fixtures. Helpers for waiting on conditions live in tests/waiting.py."""

import pytest

# fixture modules that test files load with ``pytest_plugins`` or import: rewrite their asserts too
pytest.register_assert_rewrite("mosquitto", "modem_fixtures", "store_fixtures", "daemon_helpers", "http_fixtures",
                              "webhook_receiver", "config_errors")
