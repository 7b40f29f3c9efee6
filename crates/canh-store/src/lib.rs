//! canh-store (under construction)
