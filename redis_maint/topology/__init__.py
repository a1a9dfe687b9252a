"""Where the maintained Redis's nodes are and what role each plays (Sentinel)."""
