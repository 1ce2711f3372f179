"""Shared machinery for every farm member: state, clock, member base classes, HTTP hosting."""
