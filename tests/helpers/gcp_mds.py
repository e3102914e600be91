#!/usr/bin/env python3
"""A GCE metadata-server stand-in that is also a gateway to the Compute
emulator: Application Default Credentials find it through GCE_METADATA_HOST.

    gcp_mds.py EMULATOR_URL      # prints "listening PORT"

/computeMetadata/v1/instance/service-accounts/default/token (with
Metadata-Flavor: Google) issues a fresh token; /compute/v1/... is forwarded
to the emulator only with a token issued here, else 401 with Google's error
body. GET /_stats: {"issued": N, "forwarded": N, "refused": N}.
"""
import json, secrets, sys, threading, urllib.request, urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = sys.argv[1].rstrip("/")
ISSUED, STATS, LOCK = set(), {"issued": 0, "forwarded": 0, "refused": 0}, threading.Lock()

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass

    def reply(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status); self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)

    def route(self):
        path = self.path.split("?")[0]
        if path.startswith("/computeMetadata/"):
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.reply(403, b"Missing Metadata-Flavor header", "text/plain")
            if path.endswith("/service-accounts/default/token"):
                tok = "mds-" + secrets.token_hex(16)
                with LOCK:
                    ISSUED.add(tok); STATS["issued"] += 1
                return self.reply(200, {"access_token": tok, "expires_in": 3599, "token_type": "Bearer"})
            if path.endswith("/universe/universe-domain"):
                return self.reply(200, b"googleapis.com", "text/plain")
            if path.endswith("/service-accounts/default/email"):
                return self.reply(200, b"segc@p1.iam.gserviceaccount.com", "text/plain")
            return self.reply(404, b"not found", "text/plain")
        if path == "/_stats":
            return self.reply(200, STATS)
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in ISSUED:
            with LOCK: STATS["refused"] += 1
            return self.reply(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials.", "errors": [{"reason": "authError", "domain": "global", "message": "Invalid Credentials"}]}})
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        req = urllib.request.Request(UPSTREAM + self.path, data=body, method=self.command,
                                     headers={"Authorization": auth, "Content-Type": "application/json"})
        with LOCK: STATS["forwarded"] += 1
        try:
            with urllib.request.urlopen(req) as r:
                return self.reply(r.status, r.read())
        except urllib.error.HTTPError as e:
            return self.reply(e.code, e.read())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = route

if __name__ == "__main__":
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(f"listening {srv.server_address[1]}", flush=True)
    srv.serve_forever()
