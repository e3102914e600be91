"""A feed server for tests: HTTPS with its own CA, serving one folder.

    python3 https_feed.py DIR PORT CERT KEY

Serves DIR over TLS on 127.0.0.1:PORT (GET only). A path that does not exist
is a 404; `slow.netset` waits 60 s before answering (a hanging source). The
test changes what is served by writing files into DIR atomically. Prints
"ready" once listening."""
import http.server
import os
import ssl
import sys
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/slow.netset"):
            time.sleep(60)
        return super().do_GET()

    def log_message(self, *args):
        pass


def main():
    root, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    os.chdir(root)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
