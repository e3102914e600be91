#!/usr/bin/env python3
"""A gateway in front of the moto EC2 server that injects EC2 errors into
writes, as the real API returns them, since moto has no fault control.

    ec2_gateway.py MOTO_URL        # prints "listening PORT"; binds 127.0.0.1 only

Writes are the Create*, Authorize*, Revoke* and Delete* actions of the EC2
query protocol. Control (not part of EC2):
    POST /_fault {"after": N, "code": C, "status": S, "count": K}
        the K writes after the next N writes fail with HTTP S and error code C
        (RequestLimitExceeded with 503 is EC2's throttling; UnauthorizedOperation
        with 403 is an IAM denial, which no client retries)
    GET  /_fault                   the current fault state
Every other request is forwarded unchanged.
"""
import json, sys, threading, uuid
from urllib.parse import parse_qs

from gateway import Handler, serve

MOTO = sys.argv[1].rstrip("/")
FAULT = {"after": None, "code": "RequestLimitExceeded", "status": 503, "count": 0, "failed": 0}
LOCK = threading.Lock()
WRITES = ("Create", "Authorize", "Revoke", "Delete")

class H(Handler):
    def inject(self, action):
        with LOCK:
            if not action.startswith(WRITES) or FAULT["after"] is None:
                return None
            if FAULT["after"] > 0:
                FAULT["after"] -= 1
                return None
            if FAULT["count"] <= 0:
                return None
            FAULT["count"] -= 1
            FAULT["failed"] += 1
            if FAULT["count"] == 0:
                FAULT["after"] = None
            return FAULT["status"], FAULT["code"]

    def route(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
        if self.path == "/_fault":
            with LOCK:
                if self.command == "POST":
                    FAULT.update(json.loads(body or b"{}"))
                return self.send(200, json.dumps(FAULT).encode(), [("content-type", "application/json")])
        action = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        if fault := self.inject(action):
            status, code = fault
            xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                   f'<Message>injected by ec2_gateway.py</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>')
            return self.send(status, xml.encode(), [("content-type", "text/xml;charset=UTF-8")])
        self.forward(MOTO, body, ("content-type", "x-amzn-requestid"))

if __name__ == "__main__":
    serve(H)
