"""Running Hive Portal on many processes and hosts: media storage, health
checks and the ops endpoints (/healthz, /readyz, /metrics)."""
