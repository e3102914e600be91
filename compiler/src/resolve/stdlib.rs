//! The standard library, embedded in the binary: module name and source.

pub const STDLIB: &[(&str, &str)] =
    &[("services", include_str!("../../../stdlib/services.seg")), ("zones", include_str!("../../../stdlib/zones.seg"))];
