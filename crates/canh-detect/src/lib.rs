//! canh-detect (under construction)
