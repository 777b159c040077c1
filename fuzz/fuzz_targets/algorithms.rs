//! libFuzzer entry point of the algorithms target (see
//! `qnetd_fuzz::algorithms`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qnetd_fuzz::algorithms::run(data));
