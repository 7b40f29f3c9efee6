//! End-to-end tests of the server through real sockets.

mod agents;
mod ingest;
mod detect;
mod tail;
mod rsyslog;
