use super::*;
use chrono::TimeZone;
use proptest::prelude::*;

fn ev() -> Event {
    let mut e = Event::new(Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap());
    e.set("host.name", "web-01");
    e.set("user.name", "John Smith");
    e.set("source.ip", "10.1.2.3");
    e.set("destination.ip", "2001:db8::7");
    e.set("destination.port", 443);
    e.set("process.pid", 4242);
    e.set("event.outcome", "failure");
    e.set("host.ip", serde_json::json!(["192.168.1.5", "172.16.0.9"]));
    e.set("file.path", "C:\\Windows\\System32\\cmd.exe");
    e.set(
        "message",
        "Failed password for root from 10.1.2.3 port 22 ssh2",
    );
    e.set(
        "event.original",
        "<38>May  1 10:00:00 web-01 sshd[4242]: Failed password",
    );
    e.set("labels.ok", true);
    e
}

fn m(q: &str) -> bool {
    parse(q)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .matches(&ev())
}

fn term(field: &str, value: &str) -> Expr {
    Expr::Term {
        field: Some(field.into()),
        value: value.into(),
    }
}

#[test]
fn field_value_is_a_term() {
    assert_eq!(
        parse("host.name:web-01").unwrap(),
        term("host.name", "web-01")
    );
    assert!(m("host.name:web-01"));
    assert!(!m("host.name:web-02"));
    assert!(!m("host.name:WEB-01"), "keywords are case-sensitive");
}

#[test]
fn quoted_value_is_a_phrase() {
    assert_eq!(
        parse(r#"user.name:"John Smith""#).unwrap(),
        Expr::Phrase {
            field: Some("user.name".into()),
            value: "John Smith".into()
        }
    );
    assert!(m(r#"user.name:"John Smith""#));
    assert!(!m(r#"user.name:"John""#));
}

#[test]
fn bare_terms_and_phrases_search_full_text() {
    assert_eq!(
        parse("failed").unwrap(),
        Expr::Term {
            field: None,
            value: "failed".into()
        }
    );
    assert!(m("failed"));
    assert!(m("FAILED"), "full text is case-insensitive");
    assert!(m(r#""failed password for root""#));
    assert!(!m(r#""password failed""#));
    assert!(m("sshd"), "event.original is searched too");
    assert!(!m("mimikatz"));
    assert!(m("message:password"));
    assert!(!m("message:sshd"));
}

#[test]
fn wildcards_match_keywords_and_tokens() {
    assert_eq!(
        parse("host.name:web-*").unwrap(),
        Expr::Wildcard {
            field: Some("host.name".into()),
            pattern: "web-*".into()
        }
    );
    assert!(m("host.name:web-*"));
    assert!(m("host.name:web-0?"));
    assert!(m("host.name:*01"));
    assert!(!m("host.name:db*"));
    assert!(m("pass*"));
    assert!(m("Pass?ord"));
    assert!(!m("pass?"));
    assert!(m("destination.port:4*"));
}

#[test]
fn escaped_wildcard_is_literal() {
    let q = parse(r"file.path:C\:\\Windows\\*").unwrap();
    assert_eq!(
        q,
        Expr::Wildcard {
            field: Some("file.path".into()),
            pattern: r"C:\\Windows\\*".into()
        }
    );
    assert!(q.matches(&ev()));
    let lit = parse(r"host.name:web\*").unwrap();
    assert_eq!(lit, term("host.name", "web*"));
    assert!(!lit.matches(&ev()));
}

#[test]
fn ranges_inclusive_exclusive_and_open() {
    assert!(m("destination.port:[400 TO 500]"));
    assert!(m("destination.port:[443 TO 443]"));
    assert!(!m("destination.port:{443 TO 500]"));
    assert!(m("destination.port:[100 TO *]"));
    assert!(!m("destination.port:[* TO 100]"));
    assert_eq!(
        parse("destination.port:{1 TO *]").unwrap(),
        Expr::Range {
            field: "destination.port".into(),
            lower: Some(RangeBound {
                value: "1".into(),
                inclusive: false
            }),
            upper: None,
        }
    );
}

#[test]
fn comparisons_in_both_styles() {
    assert!(m("destination.port:>=443"));
    assert!(!m("destination.port:>443"));
    assert!(m("destination.port>442"));
    assert!(m("destination.port < 444"));
    assert!(m("process.pid<=4242"));
    assert_eq!(parse("a>1").unwrap(), parse("a:>1").unwrap());
    assert_eq!(parse("a >= 1").unwrap(), parse("a:[1 TO *]").unwrap());
}

#[test]
fn timestamp_ranges_read_times_with_colons() {
    assert!(m("@timestamp:[2024-05-01T00:00:00Z TO 2024-05-02]"));
    assert!(m("@timestamp:>=2024-05-01T10:00:00Z"));
    assert!(!m("@timestamp:>2024-05-01T10:00:00Z"));
    assert!(m(r#"@timestamp:<"2024-05-01 11:00:00""#));
    assert!(m("@timestamp:2024-05-01T10:00:00Z"));
}

#[test]
fn booleans_in_all_spellings() {
    for q in [
        "host.name:web-01 AND failed",
        "host.name:web-01 and failed",
        "host.name:web-01 && failed",
        "host.name:web-01 failed",
        "+host.name:web-01 +failed",
    ] {
        assert!(m(q), "{q}");
    }
    for q in [
        "NOT failed",
        "not failed",
        "!failed",
        "-failed",
        "host.name:x OR mimikatz",
    ] {
        assert!(!m(q), "{q}");
    }
    assert!(m("host.name:x OR failed"));
    assert!(m("host.name:x || failed"));
    assert!(m("host.name:x or failed"));
    assert!(m("NOT host.name:x"));
}

#[test]
fn and_binds_tighter_than_or() {
    let q = parse("a:1 OR b:2 AND c:3").unwrap();
    assert_eq!(
        q,
        Expr::Or(vec![
            term("a", "1"),
            Expr::And(vec![term("b", "2"), term("c", "3")])
        ])
    );
    let grouped = parse("(a:1 OR b:2) AND c:3").unwrap();
    assert_eq!(
        grouped,
        Expr::And(vec![
            Expr::Or(vec![term("a", "1"), term("b", "2")]),
            term("c", "3")
        ])
    );
}

#[test]
fn field_applies_to_a_group_of_values() {
    let q = parse("host.name:(web-01 OR db-01)").unwrap();
    assert_eq!(
        q,
        Expr::Or(vec![
            term("host.name", "web-01"),
            term("host.name", "db-01")
        ])
    );
    assert!(q.matches(&ev()));
    assert!(!m("host.name:(db-01 OR \"db 02\")"));
    assert!(parse("host.name:(a OR user.name:b)").is_err());
}

#[test]
fn exists_in_both_forms() {
    assert_eq!(
        parse("_exists_:user.name").unwrap(),
        Expr::Exists {
            field: "user.name".into()
        }
    );
    assert_eq!(
        parse("user.name:*").unwrap(),
        Expr::Exists {
            field: "user.name".into()
        }
    );
    assert!(m("_exists_:user.name"));
    assert!(!m("_exists_:dns.question.name"));
    assert!(m("_exists_:@timestamp"));
}

#[test]
fn cidr_matches_ip_fields() {
    let q = parse("source.ip:10.0.0.0/8").unwrap();
    assert_eq!(
        q,
        Expr::Cidr {
            field: "source.ip".into(),
            net: Cidr::parse("10.0.0.0/8").unwrap()
        }
    );
    assert!(q.matches(&ev()));
    assert!(!m("source.ip:192.168.0.0/16"));
    assert!(m("host.ip:172.16.0.0/12"), "any element of an array");
    assert!(m("destination.ip:2001:db8::/32"));
    assert!(!m("destination.ip:2001:db9::/32"));
    assert!(m("source.ip:0.0.0.0/0"));
    assert_eq!(parse("url.path:a/b").unwrap(), term("url.path", "a/b"));
}

#[test]
fn ipv6_values_glue_across_colons() {
    assert_eq!(
        parse("destination.ip:2001:db8::7").unwrap(),
        term("destination.ip", "2001:db8::7")
    );
    assert!(m("destination.ip:2001:db8::7"));
}

#[test]
fn match_all_forms() {
    assert_eq!(parse("").unwrap(), Expr::All);
    assert_eq!(parse("   ").unwrap(), Expr::All);
    assert_eq!(parse("*").unwrap(), Expr::All);
    assert_eq!(parse("*:*").unwrap(), Expr::All);
}

#[test]
fn numbers_and_booleans_compare_by_value() {
    assert!(m("destination.port:443"));
    assert!(m("destination.port:443.0"));
    assert!(!m("destination.port:80"));
    assert!(m("labels.ok:true"));
    assert!(!m("labels.ok:false"));
}

#[test]
fn quoting_and_escaping() {
    assert_eq!(
        parse(r#"message:"say \"hi\"""#).unwrap(),
        Expr::Phrase {
            field: Some("message".into()),
            value: "say \"hi\"".into()
        }
    );
    assert_eq!(parse(r"a:b\ c").unwrap(), term("a", "b c"));
    assert_eq!(parse(r"a:\AND").unwrap(), term("a", "AND"));
    assert_eq!(
        parse(r#"a:"AND""#).unwrap(),
        Expr::Phrase {
            field: Some("a".into()),
            value: "AND".into()
        }
    );
    assert_eq!(parse("a:b-c").unwrap(), term("a", "b-c"));
}

#[test]
fn errors_carry_positions() {
    let cases = [
        ("host.name:", 10),
        ("(a OR b", 0),
        ("a OR", 4),
        (r#"message:"open"#, 8),
        ("a:[1 TO", 7),
        ("a:[1 2]", 5),
        ("AND a", 0),
        (")", 0),
        ("a\\", 1),
        ("[1 TO 2]", 0),
    ];
    for (q, pos) in cases {
        let e = parse(q).expect_err(q);
        assert_eq!(e.position, pos, "{q}: {e}");
        assert!(e.to_string().contains("invalid query at byte"));
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let q = "(".repeat(10_000) + "a" + &")".repeat(10_000);
    assert!(parse(&q).unwrap_err().message.contains("nested"));
    let n = "NOT ".repeat(10_000) + "a";
    assert!(parse(&n).is_err());
}

#[test]
fn display_round_trips_examples() {
    for q in [
        "host.name:web-01 AND (failed OR \"bad thing\")",
        r"file.path:C\:\\Windows\\* -user.name:adm?n",
        "destination.port:{1 TO 1024] source.ip:10.0.0.0/8 _exists_:user.name",
        r"a:\AND b:\- c:\*",
        "@timestamp:[2024-05-01T00:00:00Z TO *}",
        "NOT NOT a",
    ] {
        let e = parse(q).unwrap();
        let again = parse(&e.to_string()).unwrap_or_else(|x| panic!("{e}: {x}"));
        assert_eq!(again, e, "{q} -> {e}");
    }
}

#[test]
fn glob_helpers() {
    let g = Glob::new(r"web-\*x*");
    assert!(g.matches("web-*xyz"));
    assert!(!g.matches("web-axyz"));
    assert_eq!(g.literal_prefix(), "web-*x");
    assert_eq!(Glob::new("a?c*").to_regex(), "a.c.*");
    assert!(Glob::new("*").matches(""));
    assert!(!Glob::new("?").matches(""));
    assert!(Glob::new("**a**").matches("xxa"));
}

#[test]
fn tokenizer_splits_and_lowercases() {
    assert_eq!(
        tokenize("Failed-Password  for ROOT.exe"),
        vec!["failed", "password", "for", "root", "exe"]
    );
    assert_eq!(
        tokenize("Đăng nhập THẤT bại"),
        vec!["đăng", "nhập", "thất", "bại"]
    );
    assert!(tokenize(&"x".repeat(300)).is_empty());
}

fn arb_word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{1,8}",
        "[a-zA-Z0-9 *?:\\\\\"()\\[\\]{}<>!+-]{1,8}",
        Just("AND".to_owned()),
        Just("TO".to_owned()),
    ]
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    let field = prop_oneof!["[a-z]{1,5}(\\.[a-z]{1,5})?", Just("@timestamp".to_owned())];
    let leaf = prop_oneof![
        (proptest::option::of(field.clone()), arb_word())
            .prop_map(|(field, value)| Expr::Term { field, value }),
        (proptest::option::of(field.clone()), arb_word())
            .prop_map(|(field, value)| Expr::Phrase { field, value }),
        (field.clone(), "[a-z]{0,3}[*?][a-z]{0,3}").prop_map(|(f, pattern)| Expr::Wildcard {
            field: Some(f),
            pattern
        }),
        (
            field.clone(),
            proptest::option::of(arb_word()),
            any::<bool>()
        )
            .prop_map(|(field, lo, incl)| Expr::Range {
                field,
                lower: lo.map(|value| RangeBound {
                    value,
                    inclusive: incl
                }),
                upper: Some(RangeBound {
                    value: "z".into(),
                    inclusive: !incl
                }),
            }),
        field.clone().prop_map(|field| Expr::Exists { field }),
        (field, any::<u32>(), 0u8..=32).prop_map(|(field, a, prefix)| Expr::Cidr {
            field,
            net: Cidr {
                addr: IpAddr::V4(a.into()),
                prefix
            },
        }),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

/// Terms whose text is empty or `*` have no canonical unquoted form; skip them.
fn printable(e: &Expr) -> bool {
    match e {
        Expr::And(p) | Expr::Or(p) => p.iter().all(printable),
        Expr::Not(i) => printable(i),
        Expr::Term { value, .. } => !value.trim().is_empty() && !value.contains(' '),
        Expr::Phrase { value, field } => field.as_deref() != Some("_exists_") || !value.is_empty(),
        Expr::Wildcard { pattern, .. } => pattern != "*",
        Expr::Range { lower, .. } => lower.as_ref().is_none_or(|b| b.value != "*"),
        _ => true,
    }
}

proptest! {
    #[test]
    fn parser_never_panics(s in "\\PC{0,64}") {
        let r = parse(&s);
        prop_assert!(r.is_ok() || r.is_err_and(|e| e.position <= s.len()));
    }

    #[test]
    fn parser_never_panics_on_query_alphabet(s in "[a-z:*?\\\\\"()\\[\\]{}<>=!+\\- ./0-9]{0,40}") {
        let r = parse(&s);
        if let Ok(e) = &r {
            // Whatever parses can be evaluated.
            let _ = e.matches(&ev());
        }
        prop_assert!(r.is_ok() || r.is_err_and(|e| e.position <= s.len()));
    }

    #[test]
    fn display_parses_back_to_the_same_expr(e in arb_expr().prop_filter("printable", printable)) {
        let text = e.to_string();
        let back = parse(&text);
        prop_assert_eq!(back, Ok(e), "{}", text);
    }
}
