"""The REST API under /api/v1/: shared pieces (errors, permissions, base viewsets)."""
