"""Partner webhooks: signed, retried, logged notifications (receivers of services.notify)."""
