"""Tests of headlined.coverage."""
