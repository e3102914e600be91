//! The ARM template (`azure/nsg.json`), serialised from typed structs: 40000
//! rules without building a JSON tree first. Field order is the sorted key
//! order `rule_properties` (a JSON map) gives: the same bytes either way.

use serde_json::{json, Value};

use super::{Direction, Nsg, Rule};
use crate::ir::Model;

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

/// Writes the ARM template.
pub fn write(model: &Model, nsgs: &[Nsg], w: &mut dyn std::io::Write) -> std::io::Result<()> {
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
    super::super::write_json(&t, w)
}
