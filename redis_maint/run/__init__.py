"""The one run path (lease -> row -> job -> outcome -> observers), the daemon, and interrupts."""
