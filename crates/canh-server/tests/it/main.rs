//! End-to-end tests of the server through real sockets.
