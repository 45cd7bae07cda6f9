#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| websockify::fuzzing::token_file(data));
