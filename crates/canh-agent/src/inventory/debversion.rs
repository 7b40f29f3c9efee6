//! Debian version ordering (Debian Policy §5.6.12): `[epoch:]upstream[-revision]`.
//!
//! Letters sort before non-letters, `~` sorts before everything (even the end of the string),
//! and digit runs compare numerically. So `1.0~rc1 < 1.0`, `1:0.9 > 2.0` and a binNMU
//! `5.2.15-2+b8 > 5.2.15-2`.

use std::cmp::Ordering;

/// A parsed Debian version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebVersion {
    /// Epoch (0 when absent).
    pub epoch: u64,
    /// Upstream version.
    pub upstream: String,
    /// Debian revision (empty when absent).
    pub revision: String,
}

/// Why a version string is not a Debian version.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid Debian version {0:?}")]
pub struct VersionError(pub String);

impl std::str::FromStr for DebVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError(s.to_owned());
        let s = s.trim();
        let (epoch, rest) = match s.split_once(':') {
            Some((e, r)) => (e.parse::<u64>().map_err(|_| bad())?, r),
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() || !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad());
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !upstream.chars().all(ok)
            || !revision
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.~".contains(c))
        {
            return Err(bad());
        }
        Ok(Self {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// Compares two upstream or revision strings the way dpkg does.
fn compare_part(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| compare_part(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> DebVersion {
        s.parse().unwrap()
    }

    #[test]
    fn policy_examples_order_correctly() {
        // Tilde sorts before anything, even the end of the part.
        assert!(v("1.0~rc1") < v("1.0"));
        assert!(v("1.0~~") < v("1.0~"));
        assert!(v("1.0~~") < v("1.0~~a"));
        assert!(v("1.0~~a") < v("1.0~"));
        // Epoch dominates.
        assert!(v("1:0.9") > v("2.0"));
        // binNMU and stable-update suffixes sort newer.
        assert!(v("5.2.15-2+b8") > v("5.2.15-2"));
        assert!(v("3.0.11-1~deb12u2") > v("3.0.11-1~deb12u1"));
        assert!(v("3.0.11-1~deb12u2") < v("3.0.11-1"));
        // Numeric runs compare as numbers, leading zeros ignored.
        assert!(v("1.10") > v("1.9"));
        assert_eq!(v("1.01").cmp(&v("1.1")), Ordering::Equal);
        // Letters before non-letters.
        assert!(v("1.0a") < v("1.0+"));
        // Missing revision equals revision "0".
        assert_eq!(v("1.0").cmp(&v("1.0-0")), Ordering::Equal);
        // Hyphens in the upstream part: the last one starts the revision.
        assert_eq!(v("1.2-3-4").upstream, "1.2-3");
        assert!(v("2:1.2.13.dfsg-1") > v("1:1.2.13.dfsg-1"));
    }

    #[test]
    fn invalid_versions_are_errors() {
        assert!("".parse::<DebVersion>().is_err());
        assert!("x:1.0".parse::<DebVersion>().is_err());
        assert!("abc".parse::<DebVersion>().is_err());
        assert!("1.0 2".parse::<DebVersion>().is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_order_is_antisymmetric(a in "[0-9][0-9a-z.+~]{0,8}(-[0-9a-z.+~]{1,5})?", b in "[0-9][0-9a-z.+~]{0,8}") {
            let (x, y): (DebVersion, DebVersion) = (a.parse().unwrap(), b.parse().unwrap());
            prop_assert_eq!(x.cmp(&y), y.cmp(&x).reverse());
            prop_assert_eq!(x.cmp(&x), Ordering::Equal);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,30}") {
            let r = s.parse::<DebVersion>();
            prop_assert!(r.is_ok() || r.is_err());
        }
    }
}
