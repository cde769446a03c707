//! Helpers shared by the `oftp` command's end-to-end tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::Child;

/// A child process (an `oftp serve`) killed when the test ends, whatever happens.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago (for a server started as a separate process).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
