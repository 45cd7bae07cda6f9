#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| websockify::fuzzing::base64_payload(data));
