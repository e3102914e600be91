//! How targets address a zone: its typed bindings, validated by `check`.

use std::collections::BTreeMap;

use serde::Serialize;

/// A Kubernetes binding: the namespace, and the pods in it a label selector picks
/// (every pod of the namespace when the selector is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct K8sBinding {
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
}

impl K8sBinding {
    /// `namespace/key=value,key=value`, one string that tells two bindings apart.
    pub fn ident(&self) -> String {
        let sel: Vec<String> = self.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}/{}", self.namespace, sel.join(","))
    }
}

/// The target bindings of a zone. A zone without a binding for a target is
/// addressed there by its prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bindings {
    /// `aws.security_group`
    pub aws_security_group: Option<String>,
    /// `azure.nsg`
    pub azure_nsg: Option<String>,
    /// `gcp.tag`
    pub gcp_tag: Option<String>,
    /// `k8s.namespace` and `k8s.selector`
    pub k8s: Option<K8sBinding>,
    /// `windows.group`
    pub windows_group: Option<String>,
}

impl Bindings {
    /// A binding attribute's value, by its name (`aws.security_group` ...).
    pub fn by_key(&self, key: &str) -> Option<String> {
        match key {
            "aws.security_group" => self.aws_security_group.clone(),
            "azure.nsg" => self.azure_nsg.clone(),
            "gcp.tag" => self.gcp_tag.clone(),
            "k8s.namespace" => self.k8s.as_ref().map(|k| k.namespace.clone()),
            "k8s.selector" => self.k8s.as_ref().map(|k| k.selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")),
            "windows.group" => self.windows_group.clone(),
            _ => None,
        }
    }

    /// Whether any binding of the target whose attributes start with `prefix`
    /// (`aws.`, `k8s.` ...) is set.
    pub fn binds(&self, prefix: &str) -> bool {
        match prefix.trim_end_matches('.') {
            "aws" => self.aws_security_group.is_some(),
            "azure" => self.azure_nsg.is_some(),
            "gcp" => self.gcp_tag.is_some(),
            "k8s" => self.k8s.is_some(),
            "windows" => self.windows_group.is_some(),
            _ => false,
        }
    }
}

/// Parses a Kubernetes equality-based label selector, `key=value` pairs
/// separated by commas; `None` when it is not one.
pub fn parse_selector(selector: &str) -> Option<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for part in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=')?;
        let ok = |s: &str| !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        let (k, v) = (k.trim(), v.trim());
        if !ok(k) || !(v.is_empty() || ok(v)) {
            return None;
        }
        m.insert(k.to_string(), v.to_string());
    }
    Some(m)
}
