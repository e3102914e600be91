#!/usr/bin/env python3
"""Independent reads and out-of-band changes against the Azure NSG emulator.

    arm.py URL get NSG                      # JSON of the NSG, or 'null'
    arm.py URL put-rule NSG RULE JSON       # properties as JSON
    arm.py URL delete-rule NSG RULE
    arm.py URL fault JSON                   # POST /_fault; prints the fault state ('{}' reads it)
    arm.py URL put-nsg NSG                  # an NSG without the managed-by tag
"""
import json, sys, urllib.request, urllib.error

base, cmd = sys.argv[1], sys.argv[2]
path = "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/networkSecurityGroups"

def call(method, url, body=None):
    req = urllib.request.Request(base + url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer test", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            t = r.read().decode()
            return json.loads(t) if t else None
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise

q = "?api-version=2024-03-01"
if cmd == "get":
    print(json.dumps(call("GET", f"{path}/{sys.argv[3]}{q}")))
elif cmd == "put-rule":
    call("PUT", f"{path}/{sys.argv[3]}/securityRules/{sys.argv[4]}{q}", {"properties": json.loads(sys.argv[5])})
elif cmd == "delete-rule":
    call("DELETE", f"{path}/{sys.argv[3]}/securityRules/{sys.argv[4]}{q}")
elif cmd == "fault":
    print(json.dumps(call("POST", "/_fault", json.loads(sys.argv[3]))))
elif cmd == "put-nsg":
    call("PUT", f"{path}/{sys.argv[3]}{q}", {"location": "eastus", "properties": {"securityRules": []}})
else:
    sys.exit(f"unknown command {cmd}")
