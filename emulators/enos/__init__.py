"""Envision EnOS Connection Service emulator: device certificates behind the APIM gateway."""
