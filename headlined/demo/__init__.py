"""Simulated rolling-window feeds on loopback, for the demo and the tests.

`spec` says what a feed is, `model` which records it holds when, `server` serves models
over HTTP, `run` is ``headlined demo-feed``.
"""
