#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| websockify::fuzzing::hybi_frames(data));
