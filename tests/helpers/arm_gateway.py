#!/usr/bin/env python3
"""A gateway in front of the Azure NSG emulator (../shared/emulators/azure_nsg.py)
that records every state an NSG passes through and plays what the emulator
has no model of: an NSG associated with a subnet.

    arm_gateway.py ARM_URL          # prints "listening PORT"; binds 127.0.0.1 only

Control (not part of Azure):
    POST /_attach {"nsg": NAME, "subnet": ID}
        the NSG reads as associated with that subnet (`properties.subnets`),
        and ARM's refusal to delete it is played (400
        InUseNetworkSecurityGroupCannotBeDeleted)
    GET  /_log    after every successful write (PUT or DELETE of an NSG or a
        rule), the NSG as the emulator then holds it:
        [{"method": "PUT", "path": ..., "nsg": NAME, "rules": [...]}, ...]
        (`rules`: its securityRules; null once the NSG is gone)
Every other request is forwarded unchanged.
"""
import json, re, sys, threading, urllib.request

from gateway import Handler, serve

ARM = sys.argv[1].rstrip("/")
NSG = re.compile(r"^(?P<base>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/networkSecurityGroups)(/(?P<nsg>[^/?]+))?(?P<rest>/securityRules/[^/?]+)?(\?.*)?$")
ATTACHED = {}
LOG = []
LOCK = threading.Lock()
KEEP = ("content-type", "azure-asyncoperation", "retry-after", "x-ms-request-id")

def read_nsg(base, name, auth):
    req = urllib.request.Request(f"{ARM}{base}/{name}?api-version=2024-03-01", headers={"Authorization": auth})
    try:
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError:
        return None

def associate(nsg):
    if nsg and nsg.get("name") in ATTACHED:
        nsg.setdefault("properties", {})["subnets"] = [{"id": ATTACHED[nsg["name"]]}]
    return nsg

class H(Handler):
    def route(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
        if self.path == "/_attach":
            with LOCK:
                a = json.loads(body or b"{}")
                ATTACHED[a["nsg"]] = a["subnet"]
                return self.send(200, ATTACHED)
        if self.path == "/_log":
            with LOCK:
                return self.send(200, LOG)
        m = NSG.match(self.path)
        if m and m["nsg"] and not m["rest"] and self.command == "DELETE" and m["nsg"] in ATTACHED:
            return self.send(400, {"error": {"code": "InUseNetworkSecurityGroupCannotBeDeleted",
                                             "message": f"Network security group {m['nsg']} cannot be deleted because it is in use by {ATTACHED[m['nsg']]}"}})
        if self.command == "GET" and m and ATTACHED:
            return self.get_associated(m, body)
        with LOCK:
            status = self.forward(ARM, body, KEEP)
            if m and m["nsg"] and self.command in ("PUT", "DELETE") and status < 300:
                nsg = read_nsg(m["base"], m["nsg"], self.headers.get("authorization", ""))
                LOG.append({"method": self.command, "path": self.path.split("?")[0], "nsg": m["nsg"],
                            "rules": None if nsg is None else nsg["properties"]["securityRules"]})

    def get_associated(self, m, body):
        """A GET of an NSG or of the list, with associations added."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection", "host")}
        req = urllib.request.Request(ARM + self.path, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                status, data = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, data = e.code, e.read()
        if status == 200 and not m["rest"]:
            doc = json.loads(data)
            if "value" in doc:
                doc["value"] = [associate(n) for n in doc["value"]]
            else:
                doc = associate(doc)
            data = json.dumps(doc).encode()
        self.send(status, data, [("content-type", "application/json; charset=utf-8")])

if __name__ == "__main__":
    serve(H)
