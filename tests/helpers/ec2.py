#!/usr/bin/env python3
"""Independent reads and out-of-band changes for the AWS tests, with boto3
against the moto server at $AWS_ENDPOINT_URL.

    ec2.py create-vpc                         # prints the VPC id
    ec2.py groups VPC                         # JSON: name -> {id, tags, ingress, egress}
    ec2.py add-ingress GROUP_ID PROTO FROM TO PEER        # PEER: a CIDR, sg-... or pl-...
    ec2.py add-ingress-pair GROUP_ID PROTO FROM TO PEER_GROUP VPC ACCOUNT  # another VPC's group
    ec2.py create-prefix-list CIDR...         # a managed prefix list; prints its id
    ec2.py create-eni VPC GROUP_ID            # a network interface in the group; prints its id
    ec2.py revoke-ingress GROUP_ID PROTO FROM TO PEER   # PEER: a CIDR or sg-...
    ec2.py create-group VPC NAME              # an unmanaged group
"""
import json, os, sys
import boto3

ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ.get("AWS_REGION", "us-east-1"))

def flat(perms):
    out = []
    for p in perms:
        proto = p.get("IpProtocol")
        frm, to = p.get("FromPort", -1), p.get("ToPort", -1)
        for r in p.get("IpRanges", []):
            out.append([proto, frm, to, r["CidrIp"]])
        for r in p.get("Ipv6Ranges", []):
            out.append([proto, frm, to, r["CidrIpv6"]])
        for g in p.get("UserIdGroupPairs", []):
            out.append([proto, frm, to, g["GroupId"]])
        for g in p.get("PrefixListIds", []):
            out.append([proto, frm, to, g["PrefixListId"]])
    return sorted(out)

def perm(proto, frm, to, peer):
    p = {"IpProtocol": proto}
    if proto != "-1":
        p.update({"FromPort": int(frm), "ToPort": int(to)})
    if peer.startswith("pl-"):
        p["PrefixListIds"] = [{"PrefixListId": peer}]
    elif peer.startswith("sg-"):
        p["UserIdGroupPairs"] = [{"GroupId": peer}]
    elif ":" in peer:
        p["Ipv6Ranges"] = [{"CidrIpv6": peer}]
    else:
        p["IpRanges"] = [{"CidrIp": peer}]
    return p

cmd = sys.argv[1]
if cmd == "create-vpc":
    print(ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"])
elif cmd == "groups":
    res = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [sys.argv[2]]}])["SecurityGroups"]
    print(json.dumps({g["GroupName"]: {"id": g["GroupId"], "tags": {t["Key"]: t["Value"] for t in g.get("Tags", [])},
                                         "ingress": flat(g.get("IpPermissions", [])), "egress": flat(g.get("IpPermissionsEgress", []))}
                      for g in res}, sort_keys=True))
elif cmd == "add-ingress":
    ec2.authorize_security_group_ingress(GroupId=sys.argv[2], IpPermissions=[perm(*sys.argv[3:7])])
elif cmd == "add-ingress-pair":
    gid, proto, frm, to, peer, vpc, account = sys.argv[2:9]
    p = {"IpProtocol": proto, "FromPort": int(frm), "ToPort": int(to),
         "UserIdGroupPairs": [{"GroupId": peer, "VpcId": vpc, "UserId": account}]}
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[p])
elif cmd == "create-prefix-list":
    print(ec2.create_managed_prefix_list(PrefixListName="hand-made", MaxEntries=10, AddressFamily="IPv4",
                                         Entries=[{"Cidr": c} for c in sys.argv[2:]])["PrefixList"]["PrefixListId"])
elif cmd == "create-eni":
    vpc, gid = sys.argv[2:4]
    sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.200.0/24")["Subnet"]["SubnetId"]
    print(ec2.create_network_interface(SubnetId=sub, Groups=[gid])["NetworkInterface"]["NetworkInterfaceId"])
elif cmd == "revoke-ingress":
    # Revoke the rule exactly as EC2 describes it (descriptions included).
    gid, proto, frm, to, peer = sys.argv[2:7]
    g = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    for p in g.get("IpPermissions", []):
        if p.get("IpProtocol") != proto or p.get("FromPort") != int(frm) or p.get("ToPort") != int(to):
            continue
        one = {k: v for k, v in p.items() if k in ("IpProtocol", "FromPort", "ToPort")}
        pairs = [x for x in p.get("UserIdGroupPairs", []) if x.get("GroupId") == peer]
        ranges = [x for x in p.get("IpRanges", []) if x.get("CidrIp") == peer]
        v6 = [x for x in p.get("Ipv6Ranges", []) if x.get("CidrIpv6") == peer]
        if pairs or ranges or v6:
            one.update({"UserIdGroupPairs": pairs, "IpRanges": ranges, "Ipv6Ranges": v6})
            ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[one])
            break
    else:
        sys.exit("no such rule")
elif cmd == "create-group":
    print(ec2.create_security_group(GroupName=sys.argv[3], Description="hand-made", VpcId=sys.argv[2])["GroupId"])
else:
    sys.exit(f"unknown command {cmd}")
