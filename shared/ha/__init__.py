"""Home Assistant as a source and a target: WebSocket client, units of its entities, live states, history."""
