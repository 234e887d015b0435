"""smsgw appliance: the daemon, its store, dispatcher, MQTT bridge, rules and CLI."""

__version__ = "0.1.0"
