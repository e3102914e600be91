"""What the test gateways (aad.py, ec2_gateway.py) share: a quiet request
handler that answers with JSON or bytes and forwards requests upstream, and
`serve`, which prints the "listening PORT" line the tests wait for."""
import json, urllib.request, urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = ("content-length", "connection", "transfer-encoding")

class Handler(BaseHTTPRequestHandler):
    """Subclasses define `route(self)`, which serves every method."""

    def log_message(self, *a): pass

    def send(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def forward(self, base, body, keep):
        """Sends this request to `base` (headers as received, Host included)
        and relays the status, the body and the response headers named in `keep`;
        returns the status."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        req = urllib.request.Request(base + self.path, method=self.command, data=body if body else None, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                status, rh, data = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, rh, data = e.code, e.headers, e.read()
        self.send(status, data, [(k, v) for k, v in rh.items() if k.lower() in keep])
        return status

    def do_GET(self): self.route()
    do_PUT = do_DELETE = do_POST = do_GET

def serve(handler, bind="127.0.0.1:0"):
    host, _, port = bind.rpartition(":")
    srv = ThreadingHTTPServer((host, int(port)), handler)
    print(f"listening {srv.server_address[1]}", flush=True)
    srv.serve_forever()
