"""The history store: the database, runs, leases, the backup catalog, and queries over them."""
