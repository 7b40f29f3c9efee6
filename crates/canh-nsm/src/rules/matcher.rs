//! Payload inspection: content chains with relative positions, pcre, isdataat, byte_test and
//! byte_jump, evaluated on one buffer with bounded backtracking.

/// A numeric range test (`bsize`, `dsize`, `urilen`, `itype`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `N`
    Eq(u64),
    /// `!N`
    Ne(u64),
    /// `<N`
    Lt(u64),
    /// `<=N`
    Le(u64),
    /// `>N`
    Gt(u64),
    /// `>=N`
    Ge(u64),
    /// `A<>B` (exclusive)
    Between(u64, u64),
    /// `A-B` (inclusive)
    Inclusive(u64, u64),
}

impl Range {
    /// Parses Suricata's unsigned-integer syntax.
    pub fn parse(v: &str) -> Result<Self, String> {
        let v = v.trim();
        let num = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| format!("invalid number {x:?}"))
        };
        if let Some((a, b)) = v.split_once("<>") {
            return Ok(Self::Between(num(a)?, num(b)?));
        }
        if let Some(x) = v.strip_prefix("<=") {
            return Ok(Self::Le(num(x)?));
        }
        if let Some(x) = v.strip_prefix(">=") {
            return Ok(Self::Ge(num(x)?));
        }
        if let Some(x) = v.strip_prefix('<') {
            return Ok(Self::Lt(num(x)?));
        }
        if let Some(x) = v.strip_prefix('>') {
            return Ok(Self::Gt(num(x)?));
        }
        if let Some(x) = v.strip_prefix('!') {
            return Ok(Self::Ne(num(x)?));
        }
        if let Some(x) = v.strip_prefix('=') {
            return Ok(Self::Eq(num(x)?));
        }
        if let Some((a, b)) = v.split_once('-') {
            return Ok(Self::Inclusive(num(a)?, num(b)?));
        }
        Ok(Self::Eq(num(v)?))
    }

    /// Whether `x` is in the range.
    pub fn test(self, x: u64) -> bool {
        match self {
            Self::Eq(n) => x == n,
            Self::Ne(n) => x != n,
            Self::Lt(n) => x < n,
            Self::Le(n) => x <= n,
            Self::Gt(n) => x > n,
            Self::Ge(n) => x >= n,
            Self::Between(a, b) => a < x && x < b,
            Self::Inclusive(a, b) => a <= x && x <= b,
        }
    }
}

/// One `content` match.
#[derive(Debug, Clone)]
pub struct Content {
    /// Pattern bytes.
    pub pattern: Box<[u8]>,
    /// ASCII case-insensitive.
    pub nocase: bool,
    /// `content:!"..."`.
    pub negated: bool,
    /// Absolute start.
    pub offset: Option<u32>,
    /// Absolute window length from `offset`.
    pub depth: Option<u32>,
    /// Relative start from the previous match end.
    pub distance: Option<i32>,
    /// Relative window end.
    pub within: Option<u32>,
    /// Must end at the end of the buffer.
    pub endswith: bool,
    /// Marked `fast_pattern`.
    pub fast_pattern: bool,
}

impl Content {
    /// A content with no modifiers.
    pub fn new(pattern: Vec<u8>, negated: bool) -> Self {
        Self {
            pattern: pattern.into_boxed_slice(),
            nocase: false,
            negated,
            offset: None,
            depth: None,
            distance: None,
            within: None,
            endswith: false,
            fast_pattern: false,
        }
    }

    fn relative(&self) -> bool {
        self.distance.is_some() || self.within.is_some()
    }

    /// The window `[start, end)` this content may occupy.
    fn window(&self, len: usize, prev: usize) -> Option<(usize, usize)> {
        let (start, end) = if self.relative() {
            let dist = i64::from(self.distance.unwrap_or(0));
            let start = (prev as i64 + dist).max(0) as usize;
            let end = match self.within {
                Some(w) => (prev as i64 + dist + i64::from(w)).max(0) as usize,
                None => len,
            };
            (start, end)
        } else {
            let start = self.offset.unwrap_or(0) as usize;
            let end = match self.depth {
                Some(d) => start + d as usize,
                None => len,
            };
            (start, end)
        };
        let end = end.min(len);
        (start <= end).then_some((start, end))
    }

    /// Positions of the pattern inside `hay[start..end]`, in order.
    fn find_from(&self, hay: &[u8], from: usize, end: usize) -> Option<usize> {
        let p = &self.pattern;
        if p.len() > end.saturating_sub(from) {
            return None;
        }
        let window = hay.get(from..end)?;
        if !self.nocase {
            return memchr::memmem::find(window, p).map(|i| i + from);
        }
        let first = p.first()?;
        let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
        let last_start = window.len() - p.len();
        let mut at = 0;
        while at <= last_start {
            let i = memchr::memchr2(lo, up, window.get(at..=last_start)?)? + at;
            if window
                .get(i..i + p.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(p))
            {
                return Some(i + from);
            }
            at = i + 1;
        }
        None
    }
}

/// A compiled `pcre`.
#[derive(Debug, Clone)]
pub struct Pcre {
    /// The regex (bytes mode, compiled on first use), shared by the rules that spell it
    /// alike.
    pub re: std::sync::Arc<super::pcre::LazyRegex>,
    /// `/R`: search from the previous match end.
    pub relative: bool,
    /// `pcre:!"..."`.
    pub negated: bool,
}

/// Number encoding of `byte_test`/`byte_jump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumFormat {
    /// Binary, big endian.
    Big,
    /// Binary, little endian.
    Little,
    /// ASCII digits in this base.
    Text(u32),
}

/// `byte_test`.
#[derive(Debug, Clone)]
pub struct ByteTest {
    /// Bytes to read.
    pub nbytes: usize,
    /// Operator: `<`, `>`, `=`, `<=`, `>=`, `&`, `^`.
    pub op: String,
    /// Negated operator.
    pub negated: bool,
    /// Value compared with.
    pub value: u64,
    /// Offset.
    pub offset: i64,
    /// From the previous match end.
    pub relative: bool,
    /// Encoding.
    pub format: NumFormat,
    /// Applied before the test.
    pub bitmask: Option<u64>,
}

/// `byte_jump`.
#[derive(Debug, Clone)]
pub struct ByteJump {
    /// Bytes to read.
    pub nbytes: usize,
    /// Offset.
    pub offset: i64,
    /// From the previous match end.
    pub relative: bool,
    /// Encoding.
    pub format: NumFormat,
    /// Multiplier of the value.
    pub multiplier: u64,
    /// Round up to 4.
    pub align: bool,
    /// Jump from the buffer start rather than after the number.
    pub from_beginning: bool,
    /// Jump from the buffer end.
    pub from_end: bool,
    /// Added after the jump.
    pub post_offset: i64,
    /// Applied to the value.
    pub bitmask: Option<u64>,
}

/// One inspection step in a buffer.
#[derive(Debug, Clone)]
pub enum Item {
    /// `content`.
    Content(Content),
    /// `pcre`.
    Pcre(Pcre),
    /// `isdataat`.
    IsDataAt {
        /// Position.
        n: usize,
        /// From the previous match end.
        relative: bool,
        /// `!isdataat`.
        negated: bool,
    },
    /// `byte_test` (boxed: it is the largest step and the rarest).
    ByteTest(Box<ByteTest>),
    /// `byte_jump`.
    ByteJump(Box<ByteJump>),
}

impl Item {
    /// Whether the item positions itself after the previous one.
    pub fn is_relative(&self) -> bool {
        match self {
            Item::Content(c) => c.relative(),
            Item::Pcre(p) => p.relative,
            Item::IsDataAt { relative, .. } => *relative,
            Item::ByteTest(b) => b.relative,
            Item::ByteJump(b) => b.relative,
        }
    }
}

/// Backtracking budget per buffer inspection.
const STEP_BUDGET: u32 = 2048;

/// Runs the inspection chain on `buf`.
pub fn inspect(buf: &[u8], items: &[Item]) -> bool {
    let mut steps = 0u32;
    run(buf, items, 0, &mut steps)
}

fn run(buf: &[u8], items: &[Item], prev: usize, steps: &mut u32) -> bool {
    let Some((item, rest)) = items.split_first() else {
        return true;
    };
    *steps += 1;
    if *steps > STEP_BUDGET {
        return false;
    }
    match item {
        Item::Content(c) => {
            let Some((start, end)) = c.window(buf.len(), prev) else {
                return c.negated && run(buf, rest, prev, steps);
            };
            if c.negated {
                let found = if c.endswith {
                    ends_with_in(buf, c, start, end)
                } else {
                    c.find_from(buf, start, end).is_some()
                };
                return !found && run(buf, rest, prev, steps);
            }
            if c.endswith {
                return ends_with_in(buf, c, start, end) && run(buf, rest, buf.len(), steps);
            }
            let mut from = start;
            while let Some(pos) = c.find_from(buf, from, end) {
                if run(buf, rest, pos + c.pattern.len(), steps) {
                    return true;
                }
                // Only later items positioned relative to this one can profit from retrying.
                if !rest.first().is_some_and(Item::is_relative) || *steps > STEP_BUDGET {
                    return false;
                }
                from = pos + 1;
            }
            false
        }
        Item::Pcre(p) => {
            let from = if p.relative { prev.min(buf.len()) } else { 0 };
            let hay = buf.get(from..).unwrap_or(&[]);
            let Some(re) = p.re.get() else {
                return false;
            };
            match re.find(hay) {
                Some(m) if !p.negated => run(buf, rest, from + m.end(), steps),
                Some(_) => false,
                None if p.negated => run(buf, rest, prev, steps),
                None => false,
            }
        }
        Item::IsDataAt {
            n,
            relative,
            negated,
        } => {
            let has = if *relative {
                prev + n <= buf.len()
            } else {
                *n < buf.len()
            };
            has != *negated && run(buf, rest, prev, steps)
        }
        Item::ByteTest(bt) => {
            let base = if bt.relative { prev as i64 } else { 0 };
            let Some(v) = read_num(buf, base + bt.offset, bt.nbytes, bt.format) else {
                return false;
            };
            let v = bt.bitmask.map_or(v, |m| apply_mask(v, m));
            let ok = match bt.op.as_str() {
                "<" => v < bt.value,
                ">" => v > bt.value,
                "=" => v == bt.value,
                "<=" => v <= bt.value,
                ">=" => v >= bt.value,
                "&" => v & bt.value != 0,
                "^" => v ^ bt.value != 0,
                _ => false,
            };
            ok != bt.negated && run(buf, rest, prev, steps)
        }
        Item::ByteJump(bj) => {
            let base = if bj.relative { prev as i64 } else { 0 };
            let at = base + bj.offset;
            let Some(v) = read_num(buf, at, bj.nbytes, bj.format) else {
                return false;
            };
            let v = bj.bitmask.map_or(v, |m| apply_mask(v, m));
            let mut jump = v.saturating_mul(bj.multiplier) as i64;
            if bj.align && jump % 4 != 0 {
                jump += 4 - jump % 4;
            }
            let origin = if bj.from_end {
                buf.len() as i64
            } else if bj.from_beginning {
                0
            } else {
                at + bj.nbytes as i64
            };
            let target = origin.saturating_add(jump).saturating_add(bj.post_offset);
            if target < 0 || target as usize > buf.len() {
                return false;
            }
            run(buf, rest, target as usize, steps)
        }
    }
}

fn ends_with_in(buf: &[u8], c: &Content, start: usize, end: usize) -> bool {
    let p = &c.pattern;
    if end != buf.len() || p.len() > end.saturating_sub(start) {
        return false;
    }
    let tail = &buf[buf.len() - p.len()..];
    if c.nocase {
        tail.eq_ignore_ascii_case(p)
    } else {
        tail == &p[..]
    }
}

fn apply_mask(v: u64, mask: u64) -> u64 {
    if mask == 0 {
        return 0;
    }
    (v & mask) >> mask.trailing_zeros()
}

fn read_num(buf: &[u8], at: i64, n: usize, format: NumFormat) -> Option<u64> {
    if at < 0 {
        return None;
    }
    let at = at as usize;
    let bytes = buf.get(at..at.checked_add(n)?)?;
    match format {
        NumFormat::Big => Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))),
        NumFormat::Little => Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        ),
        NumFormat::Text(base) => {
            let s = std::str::from_utf8(bytes).ok()?;
            // Like strtoul: leading digits only.
            let digits: String = s
                .trim_start()
                .chars()
                .take_while(|c| c.is_digit(base))
                .collect();
            u64::from_str_radix(&digits, base).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(p: &str) -> Content {
        Content::new(p.as_bytes().to_vec(), false)
    }

    #[test]
    fn relative_chain_backtracks() {
        // The first "a" is followed by "x", the second by "b" within 1 byte.
        let mut b = content("b");
        b.distance = Some(0);
        b.within = Some(1);
        let items = vec![Item::Content(content("a")), Item::Content(b)];
        assert!(inspect(b"axab", &items));
        assert!(!inspect(b"axax", &items));
    }

    #[test]
    fn offset_depth_nocase_negation_endswith() {
        let mut c = content("GET");
        c.depth = Some(3);
        assert!(inspect(b"GET /", &[Item::Content(c.clone())]));
        assert!(!inspect(b" GET /", &[Item::Content(c.clone())]));
        c.nocase = true;
        assert!(inspect(b"get /", &[Item::Content(c)]));
        let mut e = content(".exe");
        e.endswith = true;
        assert!(inspect(b"/a.exe", &[Item::Content(e.clone())]));
        assert!(!inspect(b"/a.exe?x", &[Item::Content(e)]));
        let n = Content::new(b"evil".to_vec(), true);
        assert!(inspect(b"good", &[Item::Content(n.clone())]));
        assert!(!inspect(b"so evil", &[Item::Content(n)]));
    }

    #[test]
    fn byte_test_jump_and_isdataat() {
        let bt = ByteTest {
            nbytes: 2,
            op: ">".into(),
            negated: false,
            value: 0x100,
            offset: 0,
            relative: false,
            format: NumFormat::Big,
            bitmask: None,
        };
        assert!(inspect(
            &[0x01, 0x01],
            &[Item::ByteTest(Box::new(bt.clone()))]
        ));
        assert!(!inspect(&[0x00, 0xff], &[Item::ByteTest(Box::new(bt))]));
        let bj = ByteJump {
            nbytes: 1,
            offset: 0,
            relative: false,
            format: NumFormat::Big,
            multiplier: 1,
            align: false,
            from_beginning: false,
            from_end: false,
            post_offset: 0,
            bitmask: None,
        };
        let mut x = content("X");
        x.distance = Some(0);
        x.within = Some(1);
        let items = vec![Item::ByteJump(Box::new(bj)), Item::Content(x)];
        assert!(inspect(b"\x02abX", &items));
        assert!(!inspect(b"\x01abX", &items));
        let end = Item::IsDataAt {
            n: 1,
            relative: true,
            negated: true,
        };
        let mut c = content("ab");
        c.offset = Some(0);
        assert!(inspect(b"ab", &[Item::Content(c.clone()), end.clone()]));
        assert!(!inspect(b"abc", &[Item::Content(c), end]));
    }

    #[test]
    fn ranges() {
        assert!(Range::parse("<5").unwrap().test(4));
        assert!(!Range::parse("1<>3").unwrap().test(3));
        assert!(Range::parse("1-3").unwrap().test(3));
        assert!(Range::parse(">=7").unwrap().test(7));
        assert!(Range::parse("x").is_err());
    }
}
