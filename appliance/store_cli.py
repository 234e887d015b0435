"""The store as ``smsgw send`` opens it: the table groups an enqueue uses, not every one.

``QueueStore`` is the outbound queue with what an enqueue writes in its transaction (the webhook
deliveries of its events, ``store_webhooks``) and the counts the daily caps read
(``store_reports``): what the send intake (``appliance.intake``) needs. ``smsgw status`` opens a
``store_alerts.StatusStore`` (this and the escalating alerts), and ``appliance.store.Store`` is made
of that and of the other table groups (inbound, retention, history, schedules, self-alerts), so a
function typed with one of them takes the daemon's ``Store`` too. The groups left out override
nothing an enqueue or a read runs (only ``_retention_steps``, which ``prune`` reads); importing
them is a tenth of what ``smsgw send`` costs to start.
"""

from __future__ import annotations

from appliance.store_outbound import OutboundQueue
from appliance.store_reports import Reports
from appliance.store_webhooks import WebhookTables


class QueueStore(Reports, WebhookTables, OutboundQueue):
    """The outbound queue, its webhook deliveries and the reads of counts: ``smsgw send``'s store."""
