"""Alert rules (MQTT → SMS) and command rules (SMS → MQTT).

Alert rules (``[[alerts]]``): a message on a topic matching the rule's filter (``+`` and ``#``) becomes
an SMS to the rule's recipients (numbers, contacts, groups), its text rendered from a template that
can use topic segments (``{topic[1]}``) and JSON payload fields (``{payload.temperature}`` or just
``{temperature}``). Per rule and topic, a cooldown keeps one SMS per window; alerts that arrive
during the window are coalesced into one summary at its end ("… and 14 more alerts from freezer-3 in
the last 10 min"). Quiet hours let only ``critical`` alerts through; a recipient who sent STOP gets
only critical alerts until START.

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
:mod:`~appliance.rules.commands` (command matching, the PIN guard, STATUS text) and
:mod:`~appliance.rules.engine` (the engine on the bridge and the store). Topic filters are in
:mod:`appliance.topics`, daily caps in :mod:`appliance.caps`. Import from the modules: importing this
package imports none of them.
"""
