"""Builds that run once on a builder (the controller or one host) and are installed on many
hosts: what is built, the scripts that build it, and the controller's cache of the results."""
