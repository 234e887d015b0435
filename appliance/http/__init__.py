"""The HTTP API: the second channel beside MQTT (docs/http.md).

``config`` reads ``[http]`` (no aiohttp import, so loading a config stays cheap); ``tokens`` makes
and hashes API tokens; ``auth`` checks them and limits failed attempts and request rates; ``bodies``
reads request bodies within the limits; ``routes`` answers the API; ``metrics`` and ``exposition``
serve ``/metrics``; ``openapi`` is the API's description; ``server`` runs it in the daemon's loop.
"""
