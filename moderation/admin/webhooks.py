"""Admin for partner webhook endpoints and their delivery log."""
