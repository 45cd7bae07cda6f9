#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| websockify::fuzzing::hixie_frames(data));
