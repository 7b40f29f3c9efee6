//! Integration tests of canh-nsm on real captures.

mod conformance;
mod pcaps;
mod robustness;
