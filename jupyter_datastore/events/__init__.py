"""The event bus: durable, replayable, filtered events over jupyter_server's EventLogger."""
