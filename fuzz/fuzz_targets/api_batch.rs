#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::api_batch(data));
