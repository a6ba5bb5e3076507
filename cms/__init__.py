"""Failover CMS: the Django project and the server inventory."""

from .celery import app as celery_app

__all__ = ("celery_app",)
