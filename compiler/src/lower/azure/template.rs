//! The ARM template (`azure/nsg.json`), written directly from the NSGs:
//! 40000 rules for a thousand zones. The layout is serde_json's pretty one,
//! keys in sorted order (what a JSON map of the same template gives); the
//! tests hold the writer to serde's output of a typed twin of the template.

use super::{Direction, Nsg, Rule};
use crate::ir::Model;
use crate::lower::json::Json;

const SCHEMA: &str = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#";
const API_VERSION: &str = "2024-03-01";
const LOCATION: &str = "[parameters('location')]";
const DEFAULT_LOCATION: &str = "[resourceGroup().location]";
const KIND: &str = "Microsoft.Network/networkSecurityGroups";

/// A list of one is the singular field, any other length the plural one.
fn one_or_many(l: &[String]) -> (Option<&str>, Option<&[String]>) {
    if l.len() == 1 {
        (Some(l[0].as_str()), None)
    } else {
        (None, Some(l))
    }
}

/// Writes the ARM template.
pub fn write(model: &Model, nsgs: &[Nsg], w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let policy = model.policy.name.as_deref().unwrap_or_default();
    let mut j = Json::new(w);
    j.open_object();
    j.str_field("$schema", SCHEMA);
    j.str_field("contentVersion", "1.0.0.0");
    j.key("parameters");
    j.open_object();
    j.key("location");
    j.open_object();
    j.str_field("defaultValue", DEFAULT_LOCATION);
    j.str_field("type", "string");
    j.close_object();
    j.close_object();
    j.key("resources");
    j.open_array();
    for n in nsgs {
        j.element();
        j.open_object();
        j.str_field("apiVersion", API_VERSION);
        j.str_field("location", LOCATION);
        j.str_field("name", &n.name);
        j.key("properties");
        j.open_object();
        j.key("securityRules");
        j.open_array();
        for r in &n.rules {
            j.element();
            write_rule(&mut j, r);
            j.flush_if_full()?;
        }
        j.close_array();
        j.close_object();
        j.key("tags");
        j.open_object();
        j.str_field("managed-by", "segc");
        j.str_field("segc-policy", policy);
        j.str_field("segc-zone", &n.zone);
        j.close_object();
        j.str_field("type", KIND);
        j.close_object();
    }
    j.close_array();
    j.close_object();
    j.finish()
}

/// One security rule: its name and properties, the properties' keys sorted.
fn write_rule(j: &mut Json<'_>, r: &Rule) {
    let (peer, peers) = one_or_many(&r.peer);
    let (port, ports) = one_or_many(&r.ports);
    let inbound = r.direction == Direction::Inbound;
    let (src, srcs) = if inbound { (peer, peers) } else { (Some("*"), None) };
    let (dst, dsts) = if inbound { (Some("*"), None) } else { (peer, peers) };
    let one = |j: &mut Json<'_>, k: &'static str, v: Option<&str>| {
        if let Some(v) = v {
            j.str_field(k, v);
        }
    };
    let many = |j: &mut Json<'_>, k: &'static str, v: Option<&[String]>| {
        if let Some(v) = v {
            j.strings_field(k, v);
        }
    };
    j.open_object();
    j.str_field("name", &r.name);
    j.key("properties");
    j.open_object();
    j.str_field("access", r.access.as_str());
    j.str_field("description", &r.description);
    one(j, "destinationAddressPrefix", dst);
    many(j, "destinationAddressPrefixes", dsts);
    one(j, "destinationPortRange", port);
    many(j, "destinationPortRanges", ports);
    j.str_field("direction", r.direction.as_str());
    j.int_field("priority", r.priority.into());
    j.str_field("protocol", r.protocol.as_str());
    one(j, "sourceAddressPrefix", src);
    many(j, "sourceAddressPrefixes", srcs);
    j.str_field("sourcePortRange", "*");
    j.close_object();
    j.close_object();
}

/// The template as typed structs for serde: the writer above must write
/// exactly what serde_json writes for them.
#[cfg(test)]
mod twin {
    use serde_json::{json, Value};

    use super::*;

    /// A rule's properties as the template writes them: typed, so 40000 rules
    /// serialise without building a JSON tree first. Fields in the order
    /// `rule_properties` (a JSON map, sorted) writes them: same bytes.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Props<'a> {
        access: &'a str,
        description: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        destination_address_prefix: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        destination_address_prefixes: Option<&'a [String]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        destination_port_range: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        destination_port_ranges: Option<&'a [String]>,
        direction: &'a str,
        priority: u32,
        protocol: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        source_address_prefix: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        source_address_prefixes: Option<&'a [String]>,
        source_port_range: &'a str,
    }

    impl<'a> Props<'a> {
        fn of(r: &'a Rule) -> Props<'a> {
            let one = |l: &'a [String]| if l.len() == 1 { (Some(l[0].as_str()), None) } else { (None, Some(l)) };
            let (peer, peers) = one(&r.peer);
            let (port, ports) = one(&r.ports);
            let inbound = r.direction == Direction::Inbound;
            let (src, srcs) = if inbound { (peer, peers) } else { (Some("*"), None) };
            let (dst, dsts) = if inbound { (Some("*"), None) } else { (peer, peers) };
            Props {
                access: r.access.as_str(),
                description: &r.description,
                destination_address_prefix: dst,
                destination_address_prefixes: dsts,
                destination_port_range: port,
                destination_port_ranges: ports,
                direction: r.direction.as_str(),
                priority: r.priority,
                protocol: r.protocol.as_str(),
                source_address_prefix: src,
                source_address_prefixes: srcs,
                source_port_range: "*",
            }
        }
    }

    #[derive(serde::Serialize)]
    struct RuleOut<'a> {
        name: &'a str,
        properties: Props<'a>,
    }

    #[derive(serde::Serialize)]
    struct Tags<'a> {
        #[serde(rename = "managed-by")]
        managed_by: &'a str,
        #[serde(rename = "segc-policy")]
        policy: &'a str,
        #[serde(rename = "segc-zone")]
        zone: &'a str,
    }

    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Resource<'a> {
        api_version: &'a str,
        location: &'a str,
        name: &'a str,
        properties: SecurityRules<'a>,
        tags: Tags<'a>,
        #[serde(rename = "type")]
        kind: &'a str,
    }

    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SecurityRules<'a> {
        security_rules: Vec<RuleOut<'a>>,
    }

    /// What serde_json writes for the template.
    pub fn serde(model: &Model, nsgs: &[Nsg]) -> Vec<u8> {
        let policy = model.policy.name.as_deref().unwrap_or_default();
        let resources: Vec<Resource<'_>> = nsgs
            .iter()
            .map(|n| Resource {
                api_version: "2024-03-01",
                location: "[parameters('location')]",
                name: &n.name,
                properties: SecurityRules {
                    security_rules: n.rules.iter().map(|r| RuleOut { name: &r.name, properties: Props::of(r) }).collect(),
                },
                tags: Tags { managed_by: "segc", policy, zone: &n.zone },
                kind: "Microsoft.Network/networkSecurityGroups",
            })
            .collect();
        let doc = json!({
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "parameters": {"location": {"type": "string", "defaultValue": "[resourceGroup().location]"}},
            "resources": [],
        });
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Template<'a> {
            #[serde(rename = "$schema")]
            schema: &'a Value,
            content_version: &'a Value,
            parameters: &'a Value,
            resources: Vec<Resource<'a>>,
        }
        let t = Template { schema: &doc["$schema"], content_version: &doc["contentVersion"], parameters: &doc["parameters"], resources };
        let mut out = serde_json::to_vec_pretty(&t).expect("serialises");
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::lower::azure;
    use crate::{compile_str, Options};

    /// One inbound and one outbound peer list of one and of many, ports of
    /// one and of many, ICMP and any, a feed block, quotes and backslashes in
    /// the policy name.
    const POLICY: &str = r#"policy "shop \"north\" \\ 1" {}
use std.zones.internet
zone web {
  cidrs = [10.0.1.0/24, 10.0.9.0/24, 2001:db8::/64]
  scope = connected
  azure.nsg = "web-nsg"
}
zone app {
  cidrs = [10.0.2.0/24]
  scope = connected
  azure.nsg = "app-nsg"
}
zone db {
  cidrs = [10.0.3.0/24, 10.0.4.0/24]
  scope = connected
  azure.nsg = "db-nsg"
}
flow internet -> web on tcp/443, tcp/80
flow web -> app on tcp/8080-8090, udp/53
flow app -> db on tcp/5432
flow db -> web on icmp
flow app -> web on any
"#;

    #[test]
    fn the_writer_writes_what_serde_writes() {
        let c = compile_str(POLICY, &Options::default());
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let nsgs = azure::lower(&c.model).expect("lowers");
        assert!(nsgs.iter().any(|n| n.rules.iter().any(|r| r.peer.len() > 1)), "a rule with many peers");
        let mut out = Vec::new();
        super::write(&c.model, &nsgs, &mut out).expect("writes");
        assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(super::twin::serde(&c.model, &nsgs)).unwrap());
    }
}
