//! Feeds arbitrary bytes to the broker's request decoder: it must return a request or an
//! error, never panic or abort (e.g. on huge array counts).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = spate_broker::server::dispatch::decode_frame(bytes::Bytes::copy_from_slice(data));
});
