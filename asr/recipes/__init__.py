"""Corpus importers: each turns a corpus's native layout into the project's manifests."""
