"""Simulated rolling-window feeds on loopback, for the demo and the tests."""
