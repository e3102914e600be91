#!/usr/bin/env python3
"""A token issuer and an authenticating gateway in front of the ARM emulator, so
tests can prove which Azure credential segc used and that ARM saw its token.

    aad.py ARM_URL FEDERATED_TOKEN IDENTITY_HEADER [HOST:PORT]
                                       # prints "listening PORT"; default 127.0.0.1:0

Token endpoints, shaped as Microsoft Entra ID and App Service publish them:
    POST /{tenant}/oauth2/v2.0/token   client_credentials with a client_assertion
                                       (workload identity); the assertion must equal
                                       FEDERATED_TOKEN and the scope PORT's /.default
    GET  /msi/token?api-version=2019-08-01&resource=R
                                       (App Service managed identity); the
                                       X-IDENTITY-HEADER must equal IDENTITY_HEADER
    GET  /metadata/identity/oauth2/token?api-version=2019-08-01&resource=R
                                       (VM managed identity, IMDS; serve it on
                                       169.254.169.254:80 inside a namespace);
                                       the Metadata header must be "true"
Everything else is forwarded to ARM_URL when it carries a bearer token issued
here, and refused with 401 otherwise. GET /_stats returns counts of tokens
issued by kind, requests forwarded and requests refused.
"""
import sys, threading, time, uuid
from urllib.parse import urlparse, parse_qs

from gateway import Handler, serve

ARM, FEDERATED, IDENTITY_HEADER = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
ISSUED = set()
STATS = {"workload": 0, "msi": 0, "imds": 0, "forwarded": 0, "refused": 0}
LOCK = threading.Lock()

class H(Handler):
    def own_scope(self):
        return f"http://{self.headers['host']}/.default"

    def issue(self, kind):
        token = f"{kind}-{uuid.uuid4()}"
        with LOCK:
            ISSUED.add(token)
            STATS[kind] += 1
        return token

    def route(self):
        u = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
        if u.path == "/_stats":
            with LOCK:
                return self.send(200, dict(STATS))
        if self.command == "POST" and u.path.endswith("/oauth2/v2.0/token"):
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if (form.get("grant_type") != "client_credentials" or form.get("client_assertion") != FEDERATED
                    or form.get("scope") != self.own_scope() or not form.get("client_id")):
                return self.send(401, {"error": "invalid_client", "error_description": "AADSTS700024: client assertion is not valid"})
            return self.send(200, {"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": self.issue("workload")})
        if self.command == "GET" and u.path == "/msi/token":
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            if self.headers.get("x-identity-header") != IDENTITY_HEADER or q.get("resource") != self.own_scope()[: -len("/.default")]:
                return self.send(400, {"error": "invalid_request", "error_description": "bad identity header or resource"})
            return self.send(200, {"access_token": self.issue("msi"), "expires_on": str(int(time.time()) + 3600),
                                   "token_type": "Bearer", "resource": q["resource"]})
        if self.command == "GET" and u.path == "/metadata/identity/oauth2/token":
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            if self.headers.get("metadata") != "true" or q.get("resource") != self.own_scope()[: -len("/.default")]:
                return self.send(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
            return self.send(200, {"access_token": self.issue("imds"), "expires_on": str(int(time.time()) + 3600),
                                   "token_type": "Bearer", "resource": q["resource"]})
        auth = self.headers.get("authorization", "")
        with LOCK:
            ok = auth.startswith("Bearer ") and auth[7:] in ISSUED
            STATS["forwarded" if ok else "refused"] += 1
        if not ok:
            return self.send(401, {"error": {"code": "InvalidAuthenticationToken", "message": "token not issued here"}})
        self.forward(ARM, body, ("content-type", "azure-asyncoperation", "retry-after", "x-ms-request-id"))

if __name__ == "__main__":
    serve(H, sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1:0")
