"""``[self_alerts]``: the gateway texts its installer about itself (config, facts, conditions, monitor)."""
