"""An HTTP receiver of Annals' audit records for tests/it/http_sinks.rs, as a SIEM's endpoint
would be: a webhook that checks each request's signature with `standardwebhooks` (the Standard
Webhooks reference library, independent of Annals), or an endpoint speaking Splunk's HTTP
Event Collector protocol as Splunk documents it (token, event objects, codes).

Usage: audit_receiver.py webhook|splunk SECRET_FILE OUT [--refuse MARKER] [--down FLAG]

Prints the port it listens on (127.0.0.1), then serves until killed. Every request it accepts
appends one JSON line per record to OUT: {"id": webhook-id or null, "record": ...} (for Splunk,
the whole event object). A request holding MARKER anywhere in a record is refused as bad
content (400); while the file FLAG exists, every request gets 503. A request whose signature
or token does not verify gets 401 and a line in OUT.rejected."""
import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()


def append(path, lines):
    with LOCK, open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, sort_keys=True) + "\n")


def splunk_events(body):
    """The event objects of a HEC request: JSON objects one after another."""
    decoder, at, events = json.JSONDecoder(), 0, []
    while True:
        while at < len(body) and body[at].isspace():
            at += 1
        if at == len(body):
            return events
        event, at = decoder.raw_decode(body, at)
        events.append(event)


def handler(args, secret):
    hook = Webhook(secret) if args.mode == "webhook" else None

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, status, payload):
            data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
            if args.down and os.path.exists(args.down):
                return self.answer(503, {"text": "Server is busy", "code": 9})
            if hook is not None:
                self.webhook(body)
            else:
                self.splunk(body)

        def webhook(self, body):
            try:
                hook.verify(body, dict(self.headers), json_parse=False)
            except WebhookVerificationError as e:
                append(args.out + ".rejected", [{"why": str(e)}])
                return self.answer(401, {"error": "signature"})
            if self.headers.get("content-type") != "application/x-ndjson":
                return self.answer(415, {"error": "content-type"})
            lines = [line for line in body.split("\n") if line]
            if any(args.refuse and args.refuse in line for line in lines):
                return self.answer(400, {"error": "a record carries a value this receiver does not accept"})
            records = [json.loads(line) for line in lines]
            append(args.out, [{"id": self.headers["webhook-id"], "record": r} for r in records])
            self.answer(204, b"")

        def splunk(self, body):
            if self.headers.get("authorization") != f"Splunk {secret}":
                append(args.out + ".rejected", [{"why": "token"}])
                return self.answer(401, {"text": "Invalid authorization", "code": 3})
            try:
                events = splunk_events(body)
            except ValueError:
                return self.answer(400, {"text": "Invalid data format", "code": 6, "invalid-event-number": 0})
            if not events:
                return self.answer(400, {"text": "No data", "code": 5})
            for n, e in enumerate(events):
                if "event" not in e:
                    return self.answer(400, {"text": "Event field is required", "code": 12, "invalid-event-number": n})
                if not isinstance(e.get("time"), (int, float)):
                    return self.answer(400, {"text": "Invalid data format", "code": 6, "invalid-event-number": n})
                if args.refuse and args.refuse in json.dumps(e["event"]):
                    return self.answer(400, {"text": "Invalid data format", "code": 6, "invalid-event-number": n})
            append(args.out, [{"id": None, "record": e} for e in events])
            self.answer(200, {"text": "Success", "code": 0})

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["webhook", "splunk"])
    p.add_argument("secret_file")
    p.add_argument("out")
    p.add_argument("--refuse")
    p.add_argument("--down")
    args = p.parse_args()
    with open(args.secret_file, encoding="utf-8") as f:
        secret = f.read().strip()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(args, secret))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
