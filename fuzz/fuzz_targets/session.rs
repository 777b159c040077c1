//! libFuzzer entry point of the session target (see `qnetd_fuzz::session`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qnetd_fuzz::session::run(data));
