//! Arbitrary operation sequences on a session pair never panic and only emit
//! well-formed frames (the CI counterpart of the `session_pair` fuzz target).

mod support {
    pub(crate) mod ops;
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_operations_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        support::ops::run(&data);
    }

    /// Mostly "deliver" operations with a few application calls mixed in, so
    /// that sessions get further than the SSID exchange.
    #[test]
    fn mostly_delivering_operations(
        seed in proptest::collection::vec(
            prop_oneof![
                4 => Just(0u8), 4 => Just(0x80u8),
                1 => Just(7u8), 1 => Just(9u8), 1 => Just(0x89u8), 1 => Just(10u8), 1 => Just(0x8au8),
                1 => Just(12u8), 1 => Just(0x8cu8), 1 => Just(13u8), 1 => Just(0x8du8),
                1 => Just(14u8), 1 => Just(0x8eu8), 1 => Just(17u8), 1 => Just(0x91u8),
                1 => Just(0x92u8), 1 => Just(18u8), 1 => any::<u8>(),
            ],
            0..400)
    ) {
        support::ops::run(&seed);
    }
}

#[test]
fn a_scripted_sequence_reaches_data_transfer() {
    // caps(initiator) = level 5, restart; caps(responder) the same; then
    // deliver, accept, deliver both ways, send a file, accept it, write, finish.
    let script: Vec<u8> = vec![
        0x0d, 0, 4, 2, // initiator caps: level 5, compression, restart, credit 5, mode B
        0x0d, 0, 4, 2, // responder caps
        0x80, 0, 7, 0, 0x80, // SSRM ->, SSID <-, accept, SSID ->
        9, 0, 0, 0, 1, // initiator send_file U, restart 0
        0, 0x8a, 0, 0x80, // deliver SFID, responder accept_file(0), deliver SFPA
        12, 50, 0, b'x', 0, 0x80, // write 150 bytes, deliver, deliver CDT
        13, 0, 2, 0, // finish_file(0, 200); deliver EFID
        0x8e, 0, 0x80, // responder confirm_file(no CD), deliver EFPA
    ];
    let stats = support::ops::run(&script);
    assert_eq!(stats.established, 2, "{stats:?}");
    assert_eq!(stats.files_accepted, 1, "{stats:?}");
    assert!(stats.data_events >= 1, "{stats:?}");
    assert_eq!(stats.files_ended, 1, "{stats:?}");
    assert_eq!(stats.sessions_ended, 0, "{stats:?}");
}
