#!/usr/bin/env python3
"""A gateway in front of the moto EC2 server that behaves as real EC2 where
moto does not, and injects EC2 errors into writes.

    ec2_gateway.py MOTO_URL        # prints "listening PORT"; binds 127.0.0.1 only

What real EC2 refuses and moto accepts, refused here with EC2's error codes:
  - a rule whose protocol, ports and peer equal an existing rule's, or
    another in the same request, whatever the descriptions
    (400 InvalidPermission.Duplicate);
  - more rules in one direction of a group than the quota, counted per
    address family: a CIDR rule in its family, a group or prefix-list rule in
    both (400 RulesPerSecurityGroupLimitExceeded; default 60);
  - a description longer than 255 characters or with characters outside
    a-zA-Z0-9. _-:/()#,@[]+=&;{}!$* (400 InvalidParameterValue);
  - deleting a group that a network interface uses or another group's rule
    names (400 DependencyViolation).

Writes are the Create*, Authorize*, Revoke* and Delete* actions of the EC2
query protocol. Control (not part of EC2):
    POST /_fault {"after": N, "code": C, "status": S, "count": K}
        the K writes after the next N writes fail with HTTP S and error code C
        (RequestLimitExceeded with 503 is EC2's throttling; UnauthorizedOperation
        with 403 is an IAM denial, which no client retries)
    GET  /_fault                   the current fault state
    POST /_config {"quota": N}     rules per group, direction and family
    GET  /_log                     every successful rule write, in order:
        [{"action": "AuthorizeSecurityGroupIngress", "group": "sg-..",
          "rules": [[proto, from, to, peer], ...]}, ...]
Every other request is forwarded unchanged.
"""
import json, os, re, sys, threading, uuid
from urllib.parse import parse_qs

import boto3
from gateway import Handler, serve

MOTO = sys.argv[1].rstrip("/")
FAULT = {"after": None, "code": "RequestLimitExceeded", "status": 503, "count": 0, "failed": 0}
CONFIG = {"quota": 60}
LOG = []
LOCK = threading.Lock()
WRITES = ("Create", "Authorize", "Revoke", "Delete")
DESCRIPTION = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]*$")
PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1"}

ec2 = boto3.client("ec2", endpoint_url=MOTO, region_name=os.environ.get("AWS_REGION", "us-east-1"),
                   aws_access_key_id="testing", aws_secret_access_key="testing")

def norm(proto, frm, to):
    proto = PROTOCOLS.get(str(proto).lower(), str(proto).lower())
    if proto == "-1":
        return proto, -1, -1
    return proto, int(frm if frm is not None else -1), int(to if to is not None else -1)

def requested(q):
    """The rules of an Authorize/Revoke query: [(rule, description)], rule = (proto, from, to, peer)."""
    perms = {}
    for k, v in q.items():
        m = re.match(r"IpPermissions\.(\d+)\.(.*)$", k)
        if m:
            perms.setdefault(int(m.group(1)), {})[m.group(2)] = v[0]
    out = []
    for _, p in sorted(perms.items()):
        base = norm(p.get("IpProtocol", "-1"), p.get("FromPort"), p.get("ToPort"))
        for k, v in sorted(p.items()):
            m = re.match(r"(IpRanges|Ipv6Ranges|UserIdGroupPairs|PrefixListIds)\.(\d+)\.(CidrIp|CidrIpv6|GroupId|PrefixListId)$", k)
            if m:
                desc = p.get(f"{m.group(1)}.{m.group(2)}.Description", "")
                out.append((base + (v,), desc))
    return out

def existing(group, egress):
    g = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    rules = []
    for p in g.get("IpPermissionsEgress" if egress else "IpPermissions", []):
        base = norm(p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"))
        for r in p.get("IpRanges", []):
            rules.append(base + (r["CidrIp"],))
        for r in p.get("Ipv6Ranges", []):
            rules.append(base + (r["CidrIpv6"],))
        for r in p.get("UserIdGroupPairs", []):
            rules.append(base + (r["GroupId"],))
        for r in p.get("PrefixListIds", []):
            rules.append(base + (r["PrefixListId"],))
    return rules

def families(peer):
    if peer.startswith(("sg-", "pl-")):
        return ("v4", "v6")
    return ("v6",) if ":" in peer else ("v4",)

def refuse(action, q):
    """EC2's refusal of an Authorize that moto would accept, or None."""
    group = q.get("GroupId", [""])[0]
    rules = requested(q)
    for _, desc in rules:
        if len(desc) > 255 or not DESCRIPTION.match(desc):
            return "InvalidParameterValue", f"Invalid rule description: {desc!r}"
    have = existing(group, action.endswith("Egress"))
    seen = set(have)
    for rule, _ in rules:
        if rule in seen:
            return "InvalidPermission.Duplicate", f"the specified rule {rule} already exists"
        seen.add(rule)
    count = {"v4": 0, "v6": 0}
    for rule in seen:
        for f in families(rule[3]):
            count[f] += 1
    for f, n in count.items():
        if n > CONFIG["quota"]:
            return "RulesPerSecurityGroupLimitExceeded", f"The maximum number of rules per security group has been reached ({f}: {n} > {CONFIG['quota']})"
    return None

def dependents(group):
    """What keeps a group from being deleted: interfaces using it, rules naming it."""
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [group]}])["NetworkInterfaces"]
    refs = [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
            if any(pair.get("GroupId") == group for p in g.get("IpPermissions", []) + g.get("IpPermissionsEgress", [])
                   for pair in p.get("UserIdGroupPairs", []))]
    return [e["NetworkInterfaceId"] for e in enis] + refs

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
            return FAULT["status"], FAULT["code"], "injected by ec2_gateway.py"

    def error(self, status, code, message):
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
               f'<Message>{message}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>')
        return self.send(status, xml.encode(), [("content-type", "text/xml;charset=UTF-8")])

    def route(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
        if self.path in ("/_fault", "/_config", "/_log"):
            with LOCK:
                state = {"/_fault": FAULT, "/_config": CONFIG, "/_log": LOG}[self.path]
                if self.command == "POST" and self.path != "/_log":
                    state.update(json.loads(body or b"{}"))
                return self.send(200, json.dumps(state).encode(), [("content-type", "application/json")])
        q = parse_qs(body.decode(errors="replace"))
        action = q.get("Action", [""])[0]
        if fault := self.inject(action):
            return self.error(*fault)
        rule_write = action.startswith(("AuthorizeSecurityGroup", "RevokeSecurityGroup")) or action == "DeleteSecurityGroup"
        # One rule write at a time, so that checks and the log see a consistent group.
        with LOCK if rule_write else NOLOCK:
            if action.startswith("AuthorizeSecurityGroup"):
                if refused := refuse(action, q):
                    return self.error(400, *refused)
            if action == "DeleteSecurityGroup":
                group = q.get("GroupId", [""])[0]
                if deps := dependents(group):
                    return self.error(400, "DependencyViolation", f"resource {group} has a dependent object: {', '.join(deps)}")
            status = self.forward(MOTO, body, ("content-type", "x-amzn-requestid"))
            if rule_write and status == 200 and action != "DeleteSecurityGroup":
                LOG.append({"action": action, "group": q.get("GroupId", [""])[0], "rules": [list(r) for r, _ in requested(q)]})

class _NoLock:
    def __enter__(self): return self
    def __exit__(self, *a): return False

NOLOCK = _NoLock()

if __name__ == "__main__":
    serve(H)
