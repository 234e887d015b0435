"""smsgw drivers: talking to GSM modems (transport, AT engine, parsers, PDU codec, modem API, simulator)."""
