"""Alert rules (MQTT → SMS), command rules (SMS → MQTT) and schedules (the clock → SMS).

Alert rules (``[[alerts]]``): a message on a topic matching the rule's filter (``+`` and ``#``) becomes
an SMS to the rule's recipients (numbers, contacts, groups), its text rendered from a template that
can use topic segments (``{topic[1]}``) and JSON payload fields (``{payload.temperature}`` or just
``{temperature}``). Per rule and topic, a cooldown keeps one SMS per window; alerts that arrive
during the window are coalesced into one summary at its end ("… and 14 more alerts from freezer-3 in
the last 10 min"). Quiet hours let only ``critical`` alerts through (or hold the others until they
end); a recipient who sent STOP gets only critical alerts until START. ``flash = true`` sends a
flash SMS (class 0).

Schedules (``[[schedules]]``): an SMS at times of day (a daily summary at 07:00) with the store's
figures, queued once per occurrence, also across restarts.

Command rules (``[[commands]]``): an SMS from a listed sender that matches the rule's pattern (named
groups) publishes a rendered payload on a rendered topic and replies by SMS, with fixed text or with
the first message on a reply topic within a timeout. A rule may demand a PIN as the first word of
the message; wrong PINs lock the sender out for a while. HELP, STATUS, STOP and START are built in.
Messages from senders that appear nowhere in the configuration execute nothing and are audited.

Templates are not ``str.format``: only ``{name}``, ``{name.field}``, ``{name[index]}``, an optional
``|upper`` / ``|lower`` / ``|title`` filter and a format spec (``{temperature:.1f}``) are understood, so
a payload can never reach Python attributes. A value that is missing renders as ``?``.

The package: :mod:`~appliance.rules.templates` (text templates), :mod:`~appliance.rules.config` (the
rule tables, validated), :mod:`~appliance.rules.alerts` (cooldown and coalescing),
:mod:`~appliance.rules.commands` (command matching, the PIN guard, STATUS text),
:mod:`~appliance.rules.engine` (the engine on the bridge and the store) and
:mod:`~appliance.rules.schedules` (the schedules on the store). Topic filters are in
:mod:`appliance.topics`, daily caps in :mod:`appliance.caps`. Import from the modules: importing this
package imports none of them.
"""
