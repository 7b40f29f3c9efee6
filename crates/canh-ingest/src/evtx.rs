//! Windows EVTX records → events (under construction).
