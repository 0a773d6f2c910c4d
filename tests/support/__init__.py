"""Helpers shared by the tests (import them as ``support.<module>``, never as ``tests.``)."""
