"""Per-modem-model profiles as TOML data; loaded by drivers.profiles."""
