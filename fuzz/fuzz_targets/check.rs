//! Parse, resolve, check and analyse arbitrary bytes: nothing may panic or hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let loader = segc_compiler::source::MemoryLoader { files: [("main.seg".to_string(), data.to_vec())].into() };
    let _ = segc_compiler::compile("main.seg", &loader, &segc_compiler::Options::default());
});
