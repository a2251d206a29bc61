"""labctl: Ansible-style lab provisioning and network-experiment orchestration."""

__version__ = "0.1.0"
