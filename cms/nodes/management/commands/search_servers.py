"""Search the LAN for node agents, as the admin's magnifier button does."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from cms.nodes.discovery import search


class Command(BaseCommand):
    help = "List the node agents that answer a LAN search (name, model, address, CMS mode)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--address", default=settings.CMS_DISCOVERY_ADDRESS,
                            help="broadcast address to ask")  # fmt: skip
        parser.add_argument("--port", type=int, default=settings.CMS_DISCOVERY_PORT)
        parser.add_argument("--timeout", type=float, default=2.0)

    def handle(self, *args: Any, address: str, port: int, timeout: float, **options: Any) -> None:
        found = search(timeout=timeout, port=port, address=address)
        for node in found:
            enabled = "CMS enabled" if node.get("cms_enabled") else "CMS not enabled"
            self.stdout.write(
                f"{node.get('name')}\t{node.get('model')}\t{node.get('address')}:"
                f"{node.get('port')}\t{node.get('cms_mode')}\t{enabled}"
            )
        self.stdout.write(f"{len(found)} server(s) found.")
