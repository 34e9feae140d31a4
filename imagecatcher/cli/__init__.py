"""Companion command lines: the old server command line, tools, client."""
