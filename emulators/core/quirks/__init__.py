"""Quirk profiles: a real device captured into a redacted file the farm replays byte for
byte (docs/QUIRKS.md)."""
