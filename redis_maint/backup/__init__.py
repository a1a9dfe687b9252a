"""Stored backups: ids and manifests, upload, retention and prune, restore."""
