"""Run the Hive simulator alone, in the foreground, until Ctrl-C."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from moderation.hive.simulator.server import base_url, make_server


class Command(BaseCommand):
    help = "Serve the built-in Hive simulator on its own port (see docs/SIMULATOR.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8100, help="port to listen on (default 8100)")
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")

    def handle(self, *args: Any, port: int, host: str, **options: Any) -> None:
        server = make_server(host, port)
        self.stdout.write(f"Hive simulator listening on {base_url(server)} (Ctrl-C to stop)")
        self.stdout.write(f"HIVE_API_URL={base_url(server)}")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
        finally:
            server.server_close()
