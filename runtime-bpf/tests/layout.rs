//! The Rust mirror and `c/segc.h` agree: a C program built from the header
//! prints every size and offset, and each must equal Rust's. And the committed
//! object was built from the current C sources.

use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use segc_runtime_bpf::*;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

macro_rules! fields {
    ($($c:literal => $rust:expr;)*) => {
        [$(($c, $rust)),*]
    };
}

#[test]
fn rust_and_c_layouts_agree() {
    // The C side uses full keys (with the LPM prefix length); Rust the data part.
    let expected = fields! {
        "sizeof(struct segc_zone_key4)" => 4 + size_of::<ZoneKey4>();
        "offsetof(struct segc_zone_key4, addr)" => 4 + offset_of!(ZoneKey4, addr);
        "sizeof(struct segc_zone_key6)" => 4 + size_of::<ZoneKey6>();
        "offsetof(struct segc_zone_key6, addr)" => 4 + offset_of!(ZoneKey6, addr);
        "sizeof(struct segc_rule_key)" => 4 + size_of::<RuleKey>();
        "offsetof(struct segc_rule_key, src_zone)" => 4 + offset_of!(RuleKey, src_zone);
        "offsetof(struct segc_rule_key, dst_zone)" => 4 + offset_of!(RuleKey, dst_zone);
        "offsetof(struct segc_rule_key, class)" => 4 + offset_of!(RuleKey, class);
        "offsetof(struct segc_rule_key, port)" => 4 + offset_of!(RuleKey, port);
        "sizeof(struct segc_port_key)" => size_of::<PortKey>();
        "offsetof(struct segc_port_key, dst_zone)" => offset_of!(PortKey, dst_zone);
        "offsetof(struct segc_port_key, class)" => offset_of!(PortKey, class);
        "offsetof(struct segc_port_key, port)" => offset_of!(PortKey, port);
        "sizeof(struct segc_pair_key)" => size_of::<PairKey>();
        "offsetof(struct segc_pair_key, class)" => offset_of!(PairKey, class);
        "SEGC_PORTS_MAX" => PORTS_MAX as usize;
        "SEGC_PAIRS_MAX" => PAIRS_MAX as usize;
        "sizeof(struct segc_config)" => size_of::<Config>();
        "offsetof(struct segc_config, hz)" => offset_of!(Config, hz);
        "offsetof(struct segc_config, flags)" => offset_of!(Config, flags);
        "offsetof(struct segc_config, sample_every)" => offset_of!(Config, sample_every);
        "offsetof(struct segc_config, n_pass)" => offset_of!(Config, n_pass);
        "offsetof(struct segc_config, timeouts)" => offset_of!(Config, timeouts);
        "offsetof(struct segc_config, pass_ethertypes)" => offset_of!(Config, pass_ethertypes);
        "SEGC_TO_MAX" => TO_MAX;
        "SEGC_TO_TCP_EST" => TO_TCP_EST;
        "SEGC_TO_UDP_REPLIED" => TO_UDP_REPLIED;
        "SEGC_TO_OTHER" => TO_OTHER;
        "SEGC_PASS_ETHERTYPES_MAX" => PASS_ETHERTYPES_MAX;
        "sizeof(struct segc_conn)" => size_of::<Conn>();
        "offsetof(struct segc_conn, epoch)" => offset_of!(Conn, epoch);
        "offsetof(struct segc_conn, state)" => offset_of!(Conn, state);
        "SEGC_CT_ESTABLISHED" => CT_ESTABLISHED as usize;
        "SEGC_CT_CLOSING" => CT_CLOSING as usize;
        "SEGC_CNT_ETHERTYPE" => CNT_ETHERTYPE as usize;
        "SEGC_CNT_INVALID" => CNT_INVALID as usize;
        "sizeof(struct segc_conn_key)" => size_of::<ConnKey>();
        "offsetof(struct segc_conn_key, sport)" => offset_of!(ConnKey, sport);
        "offsetof(struct segc_conn_key, saddr)" => offset_of!(ConnKey, saddr);
        "offsetof(struct segc_conn_key, daddr)" => offset_of!(ConnKey, daddr);
        "sizeof(struct segc_counter)" => size_of::<Counter>();
        "sizeof(struct segc_pair_counter_key)" => size_of::<PairCounterKey>();
        "offsetof(struct segc_pair_counter_key, verdict)" => offset_of!(PairCounterKey, verdict);
        "SEGC_PAIR_COUNTERS_MAX" => PAIR_COUNTERS_MAX as usize;
        "sizeof(struct segc_event)" => size_of::<Event>();
        "offsetof(struct segc_event, direction)" => offset_of!(Event, direction);
        "offsetof(struct segc_event, src_zone)" => offset_of!(Event, src_zone);
        "offsetof(struct segc_event, saddr)" => offset_of!(Event, saddr);
        "offsetof(struct segc_event, daddr)" => offset_of!(Event, daddr);
        "SEGC_ZONES4_MAX" => ZONES4_MAX as usize;
        "SEGC_VERDICTS_MAX" => VERDICTS_MAX as usize;
        "SEGC_RULES_MAX" => RULES_MAX as usize;
        "SEGC_CONNS_MAX" => CONNS_MAX as usize;
        "SEGC_CLASS_OTHER" => CLASS_OTHER as usize;
        "SEGC_F_NO_CONNTRACK" => F_NO_CONNTRACK as usize;
        "SEGC_F_NO_FLOW_CACHE" => F_NO_FLOW_CACHE as usize;
        "SEGC_FLOW_SLOTS" => FLOW_SLOTS as usize;
        "SEGC_CNT_MAX" => CNT_MAX as usize;
        "SEGC_CNT_DENY" => CNT_DENY as usize;
        "SEGC_CNT_FEED" => CNT_FEED as usize;
        "SEGC_PAIR_SLOTS" => PAIR_SLOTS as usize;
        "sizeof(struct segc_pair_slot)" => size_of::<PairSlot>();
        "offsetof(struct segc_pair_slot, verdict)" => offset_of!(PairSlot, verdict);
        "offsetof(struct segc_pair_slot, packets)" => offset_of!(PairSlot, packets);
        "SEGC_FEEDS4_MAX" => FEEDS4_MAX as usize;
        "SEGC_FEEDS6_MAX" => FEEDS6_MAX as usize;
        "SEGC_ZONE_FEED" => ZONE_FEED as usize;
    };
    let mut src = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"segc.h\"\nint main(void) {\n");
    for (c, _) in &expected {
        src.push_str(&format!("  printf(\"%zu\\n\", (size_t)({c}));\n"));
    }
    src.push_str("  return 0;\n}\n");
    let tmp = std::env::temp_dir().join(format!("segc-layout-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    std::fs::write(tmp.join("layout.c"), src).expect("write");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .arg(format!("-I{}", dir().join("c").display()))
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg(tmp.join("layout.c"))
        .arg("-o")
        .arg(tmp.join("layout"))
        .status()
        .expect("a C compiler (cc) is installed");
    assert!(st.success());
    let out = Command::new(tmp.join("layout")).output().expect("runs");
    let got: Vec<usize> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse().expect("number")).collect();
    for ((c, rust), g) in expected.iter().zip(&got) {
        assert_eq!(g, rust, "{c}: C says {g}, Rust says {rust}");
    }
    assert_eq!(got.len(), expected.len());
}

#[test]
fn committed_object_matches_its_sources() {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for f in ["c/segc.bpf.c", "c/segc.h"] {
        h.update(std::fs::read(dir().join(f)).expect("source"));
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let recorded = std::fs::read_to_string(dir().join("obj/segc.bpf.o.sources.sha256")).expect("recorded hash");
    assert_eq!(recorded.trim(), hex, "obj/segc.bpf.o is stale: run `cargo xtask bpf` and commit the object");
    assert!(OBJECT.starts_with(b"\x7fELF"), "the embedded object is an ELF file");
}
