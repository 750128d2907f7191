"""Deploying into the closed network (inventories, preflight, runner, audit): arrives with
the deploy issue; the package exists so the layout in DESIGN.md is stable."""
