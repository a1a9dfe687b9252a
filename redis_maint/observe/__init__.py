"""What watches the runs and the sidecar: metrics, notifications, the HTTP endpoint, liveness, doctor."""
