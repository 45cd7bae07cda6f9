#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| websockify::fuzzing::request_head(data));
