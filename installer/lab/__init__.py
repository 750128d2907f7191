"""The local lab: deterministic sample inputs now; container test hosts in a later release."""
