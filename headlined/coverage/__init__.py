"""`headlined coverage`: is the exported and polled history complete? See docs/coverage.md."""
