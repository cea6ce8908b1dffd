"""bench/ioc_receiver.py: the IOC endpoint bench/run points the incident feed at.

    IOC_RECEIVER_SECRET=whsec_... .venv/bin/python bench/ioc_receiver.py --port P --out events.jsonl

A threaded HTTP/1.1 server on 127.0.0.1:P. Every POST is verified with the `standardwebhooks`
library against the secret (the one bench/run gives the server as ONEWINDOW_IOC_WEBHOOK_SECRET)
and answered 204; its receipt is one JSON line in --out, flushed at once:

    {"id": ..., "type": ..., "subject": ..., "sequence": n, "time": "<the CloudEvent's time>",
     "time_epoch": s, "received": s}

(`received` is time.time() when the body was read, before verifying; `time_epoch` the CloudEvent's
`time` as Unix seconds.) A POST whose signature does not verify, or whose body is not a
CloudEvent, is answered 400, written as {"bad": "<why>", "webhook_id": ..., "received": s} and
reported on stderr at once: bench/run fails the run on any such line.

It runs in the venv's Python (bench/run itself runs in any python3) and in a process of its own,
so verifying does not compete with the bench for a GIL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

from standardwebhooks import Webhook


class Receiver(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, secret: str, out: IO[str]) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.webhook = Webhook(secret)
        self.out = out
        self.lock = threading.Lock()

    def record(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self.lock:
            self.out.write(text)
            self.out.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the pusher's client reuses its connections
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        received = time.time()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = self.server.webhook.verify(body, headers)
            if headers.get("webhook-id") != event["id"]:
                raise ValueError("webhook-id is not the CloudEvent's id")  # noqa: TRY301
            line = {
                "id": event["id"],
                "type": event["type"],
                "subject": event["subject"],
                "sequence": event["data"]["sequence"],
                "time": event["time"],
                "time_epoch": datetime.fromisoformat(event["time"]).timestamp(),
                "received": received,
            }
        except Exception as exc:  # every failure is recorded and answered 400
            why = f"{type(exc).__name__}: {exc}"
            print(f"ioc_receiver: REFUSED {headers.get('webhook-id')}: {why}", file=sys.stderr, flush=True)
            self.server.record({"bad": why, "webhook_id": headers.get("webhook-id"), "received": received})
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.record(line)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # the base class's parameter name
        return  # one line per event on stderr would cost more than the receiving


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True, help="JSON lines, one per POST received")
    args = parser.parse_args()
    secret = os.environ.get("IOC_RECEIVER_SECRET", "")
    if not secret.startswith("whsec_"):
        sys.exit("ioc_receiver: IOC_RECEIVER_SECRET must be the endpoint's whsec_ secret")
    with open(args.out, "a", encoding="utf-8") as out, Receiver(args.port, secret, out) as server:
        print(f"ioc_receiver: listening on 127.0.0.1:{args.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
