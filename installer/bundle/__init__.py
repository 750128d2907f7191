"""Bundles: spec, sources, store, build, verify, pack, SBOM."""
