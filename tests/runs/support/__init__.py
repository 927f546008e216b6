"""Test support: drivers, fake servers and settings the tests share (no tests here)."""
