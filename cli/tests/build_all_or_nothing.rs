//! `segc build` is all or nothing: artifacts stream into temporary files and
//! replace the old ones only once every target has lowered and written. A
//! target that cannot say the policy, or a file that cannot be written,
//! leaves the output folder exactly as it was (and no folder where there
//! was none).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GOOD: &str = r#"policy "shop" {}
zone web {
  cidrs = [10.0.1.0/24]
  scope = connected
  aws.security_group = "web"
  gcp.tag = "web"
}
zone app {
  cidrs = [10.0.2.0/24]
  scope = connected
  aws.security_group = "app"
  gcp.tag = "app"
}
flow web -> app on tcp/8080
"#;

/// GCP rules cannot select an ICMP type (T002); every other target can.
const ICMP_TYPE: &str = "flow web -> app on icmp/8\n";

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("segc-build-aon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch");
    d
}

fn build(policy: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["build", "--today", "2026-11-28", "--target", "bpf,nft,aws,gcp,k8s", "-o"])
        .arg(out)
        .arg(policy)
        .output()
        .expect("segc build")
}

/// Every file under `dir` with its bytes (temporary files included).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.insert(p.strip_prefix(dir).expect("inside").display().to_string(), std::fs::read(&p).expect("read"));
            }
        }
    }
    files
}

#[test]
fn a_target_that_fails_leaves_no_folder_and_the_old_build_untouched() {
    let d = scratch("target");
    std::fs::write(d.join("main.seg"), format!("{GOOD}{ICMP_TYPE}")).expect("policy");
    let fresh = d.join("fresh");
    let o = build(&d, &fresh);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("T002"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!fresh.exists(), "a failed build into a new folder creates nothing: {:?}", tree(&fresh).keys().collect::<Vec<_>>());

    // Over a good build: every file as it was, no temporary file left.
    std::fs::write(d.join("main.seg"), GOOD).expect("policy");
    let out = d.join("out");
    assert!(build(&d, &out).status.success());
    let before = tree(&out);
    assert!(before.contains_key("gcp/firewall.json") && before.contains_key("manifest.json"), "{:?}", before.keys());
    std::fs::write(d.join("main.seg"), format!("{GOOD}{ICMP_TYPE}")).expect("policy");
    assert_eq!(build(&d, &out).status.code(), Some(1));
    assert_eq!(tree(&out), before);
}

#[test]
fn a_file_that_cannot_be_written_leaves_the_old_build_untouched() {
    let d = scratch("io");
    std::fs::write(d.join("main.seg"), GOOD).expect("policy");
    let out = d.join("out");
    assert!(build(&d, &out).status.success());
    // A changed policy, and the gcp folder replaced by a file: gcp's
    // artifact cannot be created, the other targets' can.
    std::fs::write(d.join("main.seg"), GOOD.replace("tcp/8080", "tcp/9090")).expect("policy");
    std::fs::remove_dir_all(out.join("gcp")).expect("rm");
    std::fs::write(out.join("gcp"), "in the way").expect("block");
    let before = tree(&out);
    let o = build(&d, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("gcp/firewall.json") && err.contains("nothing was built"), "{err}");
    assert_eq!(tree(&out), before, "no artifact replaced, no temporary file left");
    assert!(String::from_utf8_lossy(&before["nft/ruleset.nft"]).contains("8080"));
}

/// An analysis error (P103: a flow into a cde zone without justification):
/// the build lowers alongside the analyses, and drops what it made.
#[test]
fn an_analysis_error_leaves_no_folder_and_the_old_build_untouched() {
    let d = scratch("analysis");
    let cde = "zone vault {\n  cidrs = [10.0.5.0/24]\n  scope = cde\n  gcp.tag = \"vault\"\n}\nflow app -> vault on tcp/5432\n";
    std::fs::write(d.join("main.seg"), format!("{GOOD}{cde}")).expect("policy");
    let fresh = d.join("fresh");
    let o = build(&d, &fresh);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("P103") && err.contains("nothing was built"), "{err}");
    assert!(!fresh.exists(), "{:?}", tree(&fresh).keys().collect::<Vec<_>>());

    std::fs::write(d.join("main.seg"), GOOD).expect("policy");
    let out = d.join("out");
    assert!(build(&d, &out).status.success());
    let before = tree(&out);
    std::fs::write(d.join("main.seg"), format!("{GOOD}{cde}")).expect("policy");
    assert_eq!(build(&d, &out).status.code(), Some(1));
    assert_eq!(tree(&out), before);
}
