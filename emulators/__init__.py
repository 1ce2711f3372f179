"""Device emulator farm."""
