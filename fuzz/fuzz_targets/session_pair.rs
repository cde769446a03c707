//! Arbitrary operation sequences on an initiator + responder session pair never
//! panic, and every frame a session emits is well formed. The interpreter is
//! shared with the crate's `session_ops` proptest.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/oftp-proto/tests/support/ops.rs"]
mod ops;

fuzz_target!(|data: &[u8]| {
    let _ = ops::run(data);
});
