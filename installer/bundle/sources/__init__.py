"""Content sources, one module per kind: images, models/VSIX/files (content), URLs (http)."""
