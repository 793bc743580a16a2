#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wkctl_fuzz::compose_env(data));
