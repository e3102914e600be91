//! `segc build` on the examples (retail-pos with its Windows POS terminals
//! and back office) and on a policy binding every cloud target:
//! every artifact, as text, in a snapshot (the bpf bundle through its JSON
//! twin). Same input, same bytes: the build runs twice and must not differ.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn build(policy: &Path, out: &Path, targets: &str) -> Vec<(String, String)> {
    let _ = std::fs::remove_dir_all(out);
    let o = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["build", "--today", "2026-11-28", "--target", targets, "-o"])
        .arg(out)
        .arg(policy)
        .output()
        .expect("segc build");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut files = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x != "bundle") {
                let rel = p.strip_prefix(out).expect("inside").display().to_string();
                files.push((rel, std::fs::read_to_string(&p).expect("text artifact")));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn artifacts_of_the_examples_and_a_cloud_policy() {
    let tmp = std::env::temp_dir().join(format!("segc-build-snap-{}", std::process::id()));
    let cloud = tmp.join("cloud");
    std::fs::create_dir_all(&cloud).expect("dir");
    std::fs::write(
        cloud.join("main.seg"),
        r#"policy "cloud" {}
use std.zones.internet
zone web {
  cidrs = [10.0.1.0/24]
  scope = connected
  aws.security_group = "web"
  azure.nsg = "web"
  gcp.tag = "web"
  k8s.namespace = "shop"
  k8s.selector = "app=web"
}
zone db {
  cidrs = [10.0.2.0/24]
  scope = cde
  aws.security_group = "db"
  azure.nsg = "db"
  gcp.tag = "db"
  k8s.namespace = "vault"
}
flow internet -> web on tcp/443
flow web -> db on tcp/5432 {
  justification = "orders"
  reviewed = 2026-10-01
}
"#,
    )
    .expect("policy");
    for (name, policy, targets) in [
        ("online-shop", repo().join("examples/online-shop"), "bpf,nft,aws"),
        ("retail-pos", repo().join("examples/retail-pos"), "bpf,nft,windows"),
        ("cloud", cloud.clone(), "bpf,nft,aws,azure,gcp,k8s"),
    ] {
        let a = build(&policy, &tmp.join(format!("{name}-1")), targets);
        let b = build(&policy, &tmp.join(format!("{name}-2")), targets);
        assert_eq!(a, b, "{name}: two builds differ");
        for (file, text) in a {
            insta::assert_snapshot!(format!("{name}__{}", file.replace(['/', ' '], "_")), text);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
