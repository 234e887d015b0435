"""The steps of ``smsgw setup``, each checking its answer against the real thing.

``modem``: probe candidate ports, enter the PIN once through the PIN guard, send the test SMS and
wait for the reply; ``broker``: :mod:`appliance.broker_check`; ``config_file``: render, validate and
write the TOML file; ``service``: enable and start the systemd unit. The questions and the order
live in :mod:`appliance.commands.setup`.
"""
