//! Integration tests of the `canh` binary.

mod hunt;
mod sensor;
mod server;
