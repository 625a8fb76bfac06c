"""Helpers for tests that run real servers (Redis, translane processes) on loopback."""
