"""airlock: signed offline bundles and the Ansible roles that install an AI coding platform
inside a closed network."""

__version__ = "0.1.0"
