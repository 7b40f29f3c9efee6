//! canh-server (under construction)
