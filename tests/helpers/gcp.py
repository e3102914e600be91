#!/usr/bin/env python3
"""Independent reads and out-of-band changes against the GCP firewall emulator.

    gcp.py URL list PROJECT                # the project's rules as a JSON array
    gcp.py URL insert PROJECT JSON         # a rule written by someone else (waits for nothing)
    gcp.py URL delete PROJECT NAME
    gcp.py URL fault JSON                  # POST /_fault
    gcp.py URL log                         # GET /_log
    gcp.py URL reset                       # POST /_reset
URL is the emulator's root (http://127.0.0.1:PORT).
"""
import json, sys, urllib.request, urllib.error

base, cmd = sys.argv[1].rstrip("/"), sys.argv[2]

def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer test", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        t = r.read().decode()
        return json.loads(t) if t else None

if cmd == "list":
    items, token = [], None
    while True:
        q = f"?maxResults=100" + (f"&pageToken={token}" if token else "")
        page = call("GET", f"/compute/v1/projects/{sys.argv[3]}/global/firewalls{q}")
        items += page.get("items", [])
        token = page.get("nextPageToken")
        if not token:
            break
    print(json.dumps(items))
elif cmd == "insert":
    print(json.dumps(call("POST", f"/compute/v1/projects/{sys.argv[3]}/global/firewalls", json.loads(sys.argv[4]))))
elif cmd == "delete":
    print(json.dumps(call("DELETE", f"/compute/v1/projects/{sys.argv[3]}/global/firewalls/{sys.argv[4]}")))
elif cmd == "fault":
    print(json.dumps(call("POST", "/_fault", json.loads(sys.argv[3]))))
elif cmd == "log":
    print(json.dumps(call("GET", "/_log")))
elif cmd == "reset":
    print(json.dumps(call("POST", "/_reset", {})))
else:
    sys.exit(f"unknown command {cmd}")
