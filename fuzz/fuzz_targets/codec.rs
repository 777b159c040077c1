//! libFuzzer entry point of the codec target (see `qnetd_fuzz::codec`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qnetd_fuzz::codec::run(data));
