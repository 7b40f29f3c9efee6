//! Pure FTP control-channel parsing (RFC 959 commands and replies, RFC 2428 EPRT/EPSV).

/// The data port of a `PORT h1,h2,h3,h4,p1,p2` argument or of a `227` reply
/// (`Entering Passive Mode (h1,h2,h3,h4,p1,p2)`): the last six numbers found.
pub fn port_from_tuple(text: &str) -> Option<u16> {
    // The tuple may be in parentheses, after text, or bare.
    let start = text.find('(').map_or_else(
        || {
            text.find(|c: char| c.is_ascii_digit())
                .unwrap_or(text.len())
        },
        |p| p + 1,
    );
    let body = &text[start..];
    let end = body
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' '))
        .unwrap_or(body.len());
    let nums: Vec<u16> = body[..end]
        .split(',')
        .map(|n| n.trim().parse::<u16>())
        .collect::<Result<_, _>>()
        .ok()?;
    if nums.len() != 6 || nums.iter().any(|n| *n > 255) {
        return None;
    }
    Some(nums[4] * 256 + nums[5])
}

/// The data port of an `EPRT |1|addr|port|` argument or of a `229` reply
/// (`Entering Extended Passive Mode (|||port|)`).
pub fn port_from_extended(text: &str) -> Option<u16> {
    let body = match (text.find('('), text.rfind(')')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text.trim(),
    };
    let delim = body.chars().next()?;
    let fields: Vec<&str> = body.split(delim).collect();
    // ["", proto, addr, port, ""]
    if fields.len() != 5 {
        return None;
    }
    fields[3].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_tuples() {
        assert_eq!(port_from_tuple("10,0,0,1,232,157"), Some(59549));
        assert_eq!(
            port_from_tuple("Entering Passive Mode (172,23,0,2,134,21)."),
            Some(34325)
        );
        assert_eq!(port_from_tuple("Entering Passive Mode"), None);
        assert_eq!(port_from_tuple("1,2,3,4,300,1"), None);
        assert_eq!(port_from_tuple("1,2,3"), None);
    }

    #[test]
    fn extended_forms() {
        assert_eq!(port_from_extended("|1|132.235.1.2|6275|"), Some(6275));
        assert_eq!(port_from_extended("|2|::1|80|"), Some(80));
        assert_eq!(
            port_from_extended("Entering Extended Passive Mode (|||58612|)"),
            Some(58612)
        );
        assert_eq!(port_from_extended("(|||x|)"), None);
        assert_eq!(port_from_extended(""), None);
    }
}
