//! Spec examples for every modifier and condition form, and a property test comparing the
//! routed + prefiltered engine with the plain interpreter.

use canh_core::Event;
use serde_json::json;

use crate::{Engine, LoadOptions, RuleSet, RuleStatus};

fn rule(detection: &str) -> String {
    format!(
        "title: t\nid: r1\nlevel: high\nlogsource:\n  product: windows\n  category: process_creation\n\
         detection:\n{detection}"
    )
}

fn engine_opts(yaml: &str, opts: &LoadOptions) -> Engine {
    let (set, reports) = RuleSet::from_yaml_str(yaml, opts);
    for r in &reports {
        assert!(r.status.is_loaded(), "{:?}", r.status);
    }
    Engine::new(set)
}

fn engine(yaml: &str) -> Engine {
    engine_opts(yaml, &LoadOptions::default())
}

fn sysmon1(data: serde_json::Value) -> Event {
    let mut ev = Event::new(chrono::Utc::now());
    ev.set("winlog.channel", "Microsoft-Windows-Sysmon/Operational");
    ev.set("winlog.event_id", 1);
    if let serde_json::Value::Object(m) = data {
        for (k, v) in m {
            ev.set(&format!("winlog.event_data.{k}"), v);
        }
    }
    ev
}

fn hits(e: &Engine, data: serde_json::Value) -> bool {
    let ev = sysmon1(data);
    let fast = !e.matches(&ev).is_empty();
    assert_eq!(
        fast,
        !e.matches_unfiltered(&ev).is_empty(),
        "prefilter disagrees"
    );
    fast
}

#[test]
fn plain_values_match_whole_field_case_insensitively() {
    let e = engine(&rule(
        "  sel:\n    Image: 'C:\\Windows\\System32\\cmd.exe'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"Image": "c:\\windows\\system32\\CMD.EXE"})));
    assert!(!hits(
        &e,
        json!({"Image": "c:\\windows\\system32\\cmd.exe2"})
    ));
    assert!(!hits(
        &e,
        json!({"CommandLine": "C:\\Windows\\System32\\cmd.exe"})
    ));
}

#[test]
fn contains_startswith_endswith_and_wildcards() {
    let e = engine(&rule(
        "  sel:\n    CommandLine|contains: 'vssadmin'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "x VSSADMIN delete"})));
    let e = engine(&rule(
        "  sel:\n    Image|endswith: '\\\\rundll32.exe'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"Image": "C:\\a\\rundll32.exe"})));
    assert!(!hits(&e, json!({"Image": "C:\\a\\rundll32.exe.bak"})));
    let e = engine(&rule(
        "  sel:\n    Image|startswith: 'C:\\Users\\'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"Image": "c:\\users\\bob\\a.exe"})));
    let e = engine(&rule(
        "  sel:\n    CommandLine: '*net* user ?dd*'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "cmd /c net.exe user add"})));
    assert!(!hits(
        &e,
        json!({"CommandLine": "cmd /c net.exe user aadd"})
    ));
    let e = engine(&rule(
        "  sel:\n    CommandLine: 'a\\*b'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "A*B"})));
    assert!(!hits(&e, json!({"CommandLine": "AxB"})));
}

#[test]
fn lists_are_or_and_all_makes_them_and() {
    let d =
        "  sel:\n    CommandLine|contains:\n      - ' -enc '\n      - ' -nop '\n  condition: sel\n";
    let e = engine(&rule(d));
    assert!(hits(&e, json!({"CommandLine": "ps -nop x"})));
    let d = "  sel:\n    CommandLine|contains|all:\n      - ' -enc '\n      - ' -nop '\n  condition: sel\n";
    let e = engine(&rule(d));
    assert!(!hits(&e, json!({"CommandLine": "ps -nop x"})));
    assert!(hits(&e, json!({"CommandLine": "ps -nop -enc x"})));
}

#[test]
fn cased_re_and_re_flags() {
    let e = engine(&rule(
        "  sel:\n    CommandLine|cased: 'Foo'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "Foo"})));
    assert!(!hits(&e, json!({"CommandLine": "foo"})));
    let e = engine(&rule(
        "  sel:\n    CommandLine|re: 'a[0-9]+b'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "xa12b"})));
    assert!(!hits(&e, json!({"CommandLine": "xA12B"})));
    let e = engine(&rule(
        "  sel:\n    CommandLine|re|i: '^a[0-9]+b$'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "A12B"})));
    let e = engine(&rule(
        "  sel:\n    CommandLine|re|m: '^b$'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "a\nb\nc"})));
    let e = engine(&rule(
        "  sel:\n    CommandLine|re|s: 'a.b'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "a\nb"})));
}

#[test]
fn regex_literals_feed_the_prefilter_without_losing_matches() {
    use crate::ir::regex_facts;
    let regex_literals = |p: &str, i, m, s| regex_facts(p, i, m, s).literals;
    // Prefixes or suffixes, whichever is more selective, lower-cased.
    assert_eq!(
        regex_literals(r"IEX\s*\(", false, false, false),
        Some(vec!["iex".to_owned()])
    );
    assert_eq!(
        regex_literals(r"(Invoke-Expression|iex)\b", false, false, false),
        Some(vec!["iex".to_owned(), "invoke-expression".to_owned()])
    );
    // Nothing known: a class first and last, or a literal too short.
    assert_eq!(regex_literals(r"\w+\s\d+", false, false, false), None);
    assert_eq!(regex_literals(r"a.*b", false, false, false), None);
    // Case-insensitive `s` also matches U+017F, which lower-casing keeps: the variants are
    // literals of their own.
    assert_eq!(
        regex_literals("pass", true, false, false),
        Some(
            ["pass", "pas\u{17f}", "pa\u{17f}s", "pa\u{17f}\u{17f}"]
                .map(str::to_owned)
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        )
    );
    // A part in the middle serves when the ends are classes.
    let inner = regex_literals(
        r#"(?i)\.exe["']?\s+[^"]{0,64}werfaultsecure\.exe["']?\s+\d{2,10}"#,
        false,
        false,
        false,
    )
    .unwrap_or_default();
    let hay = r#"wsass.exe "c:\x\werfaultsecure.exe" 1234"#;
    assert!(
        !inner.is_empty()
            && inner
                .iter()
                .all(|l| l.len() >= 7 && hay.contains(l.as_str())),
        "{inner:?}"
    );
    // The property test below relies on these sets being found (a middle part, case
    // variants included).
    for (pat, part) in [("[ab]+cde[xy]", "cde"), ("(?i)[ab]+skq[xy]", "kq")] {
        let lits = regex_literals(pat, false, false, false).unwrap_or_default();
        assert!(
            !lits.is_empty() && lits.iter().all(|l| l.contains(part)),
            "{pat}: {lits:?}"
        );
    }
    // `.{N,}` is a character count, not a regex run.
    let run = |p: &str, s: bool| regex_facts(p, false, false, s).run;
    assert_eq!(
        run(".{1000,}", false),
        Some(crate::ir::CharRun {
            min: 1000,
            across_lines: false
        })
    );
    assert!(run(".{3,}", true).is_some_and(|r| r.across_lines));
    assert_eq!(run("^.{3,}", false), None);
    assert_eq!(run("a{3,}", false), None);
    let e = engine(&rule(
        "  sel:\n    CommandLine|re: '.{10,}'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "aaaaaaaaaa"})));
    assert!(!hits(&e, json!({"CommandLine": "aaaaaaaaa"})));
    assert!(!hits(&e, json!({"CommandLine": "aaaaa\naaaaa"})));
    assert!(hits(
        &e,
        json!({"CommandLine": "\u{e0}\u{e0}\u{e0}\u{e0}\u{e0}\u{e0}\u{e0}\u{e0}\u{e0}\u{e0}"})
    ));
    let e = engine(&rule(
        "  sel:\n    CommandLine|re|s: '.{10,}'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "aaaaa\naaaaa"})));
    // The Greek sigma's lower case depends on its neighbours: refused.
    assert_eq!(regex_literals("ab\u{3a3}", false, false, false), None);
    let e = engine(&rule(
        "  sel:\n    CommandLine|re|i: 'pass'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "x pa\u{17f}s y"})));
    assert!(hits(&e, json!({"CommandLine": "PASS"})));
    let e = engine(&rule(
        "  sel:\n    CommandLine|re: 'I[Ee]X\\s*\\('\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "powershell IeX ($x)"})));
    assert!(!hits(&e, json!({"CommandLine": "powershell iex ($x)"})));
    assert!(!hits(&e, json!({"CommandLine": "benign"})));
}

#[test]
fn encodings_base64_offset_utf16_windash() {
    let e = engine(&rule(
        "  sel:\n    CommandLine|base64offset|contains: '/bin/bash'\n  condition: sel\n",
    ));
    assert!(hits(
        &e,
        json!({"CommandLine": "echo IC9iaW4vYmFzaA== | base64 -d"})
    ));
    let e = engine(&rule(
        "  sel:\n    CommandLine|base64: 'hi'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "aGk="})));
    let e = engine(&rule(
        "  sel:\n    CommandLine|wide|base64offset|contains: 'ping'\n  condition: sel\n",
    ));
    assert!(hits(
        &e,
        json!({"CommandLine": "powershell -enc cABpAG4AZwA="})
    ));
    let e = engine(&rule(
        "  sel:\n    CommandLine|windash|contains: ' -s '\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"CommandLine": "psexec /s cmd"})));
    assert!(hits(&e, json!({"CommandLine": "psexec \u{2013}s cmd"})));
    assert!(!hits(&e, json!({"CommandLine": "psexec s cmd"})));
}

#[test]
fn cidr_numbers_exists_null_empty_neq() {
    let e = engine(&rule(
        "  sel:\n    SourceIp|cidr: '10.0.0.0/8'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"SourceIp": "10.1.2.3"})));
    assert!(!hits(&e, json!({"SourceIp": "11.1.2.3"})));
    let e = engine(&rule(
        "  sel:\n    SourceIp|cidr: 'fe80::/10'\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"SourceIp": "fe80::1"})));
    let e = engine(&rule(
        "  sel:\n    Port|gte: 1024\n    Port|lt: 2000\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"Port": "1024"})));
    assert!(!hits(&e, json!({"Port": "2000"})));
    assert!(!hits(&e, json!({"Port": "80"})));
    let e = engine(&rule("  sel:\n    Port|gt: 15\n  condition: sel\n"));
    assert!(hits(&e, json!({"Port": "0x10"})));
    let e = engine(&rule("  sel:\n    Hashes|exists: true\n  condition: sel\n"));
    assert!(hits(&e, json!({"Hashes": ""})));
    assert!(!hits(&e, json!({"Other": "x"})));
    let e = engine(&rule(
        "  sel:\n    Image: x\n    Hashes|exists: false\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"Image": "x"})));
    let e = engine(&rule(
        "  sel:\n    Image: x\n    User: null\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"Image": "x"})));
    assert!(hits(&e, json!({"Image": "x", "User": ""})));
    assert!(!hits(&e, json!({"Image": "x", "User": "bob"})));
    let e = engine(&rule(
        "  sel:\n    Image: x\n    User: ''\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"Image": "x", "User": ""})));
    assert!(!hits(&e, json!({"Image": "x"})));
    let e = engine(&rule(
        "  sel:\n    Image: x\n    User|neq: bob\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"Image": "x", "User": "alice"})));
    assert!(!hits(&e, json!({"Image": "x", "User": "BOB"})));
}

#[test]
fn fieldref_expand_and_time_modifiers() {
    let e = engine(&rule(
        "  sel:\n    ParentUser|fieldref: User\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"User": "Bob", "ParentUser": "bob"})));
    assert!(!hits(&e, json!({"User": "Bob", "ParentUser": "eve"})));
    let e = engine(&rule(
        "  sel:\n    CommandLine|fieldref|contains: Image\n  condition: sel\n",
    ));
    assert!(hits(
        &e,
        json!({"Image": "a.exe", "CommandLine": "run a.exe now"})
    ));
    // The referenced field may sit in UserData, like any other insert.
    let mut ev = sysmon1(json!({"ParentImage": "a.exe"}));
    ev.set("winlog.user_data.CommandLine", "A.EXE");
    let e = engine(&rule(
        "  sel:\n    ParentImage|fieldref: CommandLine\n  condition: sel\n",
    ));
    assert_eq!(e.matches(&ev).len(), 1);
    assert_eq!(e.matches_unfiltered(&ev), vec![0]);
    let mut opts = LoadOptions::default();
    opts.placeholders
        .insert("admins".into(), vec!["root".into(), "adm_*".into()]);
    let e = engine_opts(
        &rule("  sel:\n    User|expand: '%admins%'\n  condition: sel\n"),
        &opts,
    );
    assert!(hits(&e, json!({"User": "adm_bob"})));
    assert!(!hits(&e, json!({"User": "bob"})));
    let (_, reports) = RuleSet::from_yaml_str(
        &rule("  sel:\n    User|expand: '%nope%'\n  condition: sel\n"),
        &LoadOptions::default(),
    );
    assert!(matches!(reports[0].status, RuleStatus::Unsupported(_)));
    let e = engine(&rule(
        "  sel:\n    UtcTime|hour|gte: 22\n  condition: sel\n",
    ));
    assert!(hits(&e, json!({"UtcTime": "2024-01-02 23:10:00.000"})));
    assert!(!hits(&e, json!({"UtcTime": "2024-01-02 08:10:00.000"})));
}

#[test]
fn condition_forms() {
    let d = "  sel_a:\n    Image|endswith: a.exe\n  sel_b:\n    Image|endswith: b.exe\n  \
             filter_x:\n    User: x\n  condition: 1 of sel_* and not filter_x\n";
    let e = engine(&rule(d));
    assert!(hits(&e, json!({"Image": "\\b.exe", "User": "y"})));
    assert!(!hits(&e, json!({"Image": "\\b.exe", "User": "x"})));
    let d = "  sel_a:\n    Image|contains: a\n  sel_b:\n    Image|contains: b\n  condition: all of sel_*\n";
    let e = engine(&rule(d));
    assert!(hits(&e, json!({"Image": "ab"})));
    assert!(!hits(&e, json!({"Image": "a"})));
    let d = "  a:\n    Image: x\n  b:\n    User: y\n  condition: all of them\n";
    let e = engine(&rule(d));
    assert!(hits(&e, json!({"Image": "x", "User": "y"})));
    let d = "  a:\n    Image: x\n  b:\n    User: y\n  condition: 1 of them\n";
    let e = engine(&rule(d));
    assert!(hits(&e, json!({"User": "y"})));
    let d = "  a:\n    Image: x\n  b:\n    User: y\n  c:\n    Z: z\n  condition: a and (b or c) and not (b and c)\n";
    let e = engine(&rule(d));
    assert!(hits(&e, json!({"Image": "x", "Z": "z"})));
    assert!(!hits(&e, json!({"Image": "x", "Z": "z", "User": "y"})));
    let d = "  sel:\n    - Image: x\n    - User: y\n  condition: sel\n";
    let e = engine(&rule(d));
    assert!(hits(&e, json!({"User": "y"})));
}

#[test]
fn keywords_search_event_data_values() {
    let d = "  keywords:\n    - 'mimikatz'\n    - 'sekurlsa'\n  condition: keywords\n";
    let e = engine(&rule(d));
    assert!(hits(
        &e,
        json!({"CommandLine": "x SEKURLSA::logonpasswords"})
    ));
    assert!(!hits(&e, json!({"CommandLine": "benign"})));
    // The keyword texts are searched together: a word split over two values is no hit, a
    // word in any of them (numbers and `message` included) is.
    assert!(!hits(&e, json!({"A": "x mimi", "B": "katz y"})));
    assert!(hits(&e, json!({"A": 1, "B": "benign", "C": "x MimiKatz"})));
    let mut ev = sysmon1(json!({"A": "benign"}));
    ev.set("message", "ran mimikatz");
    assert_eq!(e.matches(&ev).len(), 1);
    assert_eq!(e.matches_unfiltered(&ev).len(), 1);
    let d = "  keywords:\n    '|all':\n      - 'a1'\n      - 'b2'\n  condition: keywords\n";
    let e = engine(&rule(d));
    assert!(hits(&e, json!({"X": "a1", "Y": "b2"})));
    assert!(!hits(&e, json!({"X": "a1"})));
}

#[test]
fn user_data_stands_in_for_a_missing_event_data_field() {
    let e = engine(&rule("  sel:\n    User|contains: 'ab'\n  condition: sel\n"));
    let mut ev = sysmon1(json!({}));
    ev.set("winlog.user_data.User", "xABy");
    assert_eq!(e.matches(&ev).len(), 1);
    assert_eq!(e.matches_unfiltered(&ev).len(), 1);
    // event_data wins when both are present.
    ev.set("winlog.event_data.User", "nothing");
    assert!(e.matches(&ev).is_empty());
    assert!(e.matches_unfiltered(&ev).is_empty());
}

#[test]
fn indicators_match_in_the_same_pass_as_rules() {
    let e = engine(&rule(
        "  sel:\n    Image|endswith: '\\x.exe'\n  condition: sel\n",
    ));
    let mut set = crate::IndicatorSet::new("feed-a");
    let load = set.add_list("203.0.113.0/24\nbad.example\n");
    assert_eq!(load.loaded, 2);
    e.set_indicators(set);
    let mut ev = sysmon1(json!({"Image": "C:\\x.exe", "DestinationIp": "203.0.113.9"}));
    ev.set("winlog.event_data.QueryName", "c2.bad.example");
    let (mut rules, mut iocs) = (Vec::new(), Vec::new());
    e.evaluate(&ev, |m| rules.push(m), |i| iocs.push(i));
    assert_eq!(rules.len(), 1);
    let mut got: Vec<(String, String, String)> = iocs
        .into_iter()
        .map(|i| (i.set, i.field, i.indicator))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "feed-a".into(),
                "winlog.event_data.DestinationIp".into(),
                "203.0.113.0/24".into()
            ),
            (
                "feed-a".into(),
                "winlog.event_data.QueryName".into(),
                "bad.example".into()
            ),
        ]
    );
    // Rules alone do not look at indicators; removing the set stops the hits.
    assert_eq!(e.matches(&ev).len(), 1);
    assert!(e.remove_indicators("feed-a"));
    let mut n = 0;
    e.evaluate(&ev, |_| {}, |_| n += 1);
    assert_eq!(n, 0);
}

#[test]
fn logsource_routing_needs_channel_and_event_id() {
    let e = engine(&rule(
        "  sel:\n    Image|endswith: cmd.exe\n  condition: sel\n",
    ));
    let mut ev = sysmon1(json!({"Image": "c:\\cmd.exe"}));
    ev.set("winlog.event_id", 3);
    assert!(e.matches(&ev).is_empty());
    let mut ev = Event::new(chrono::Utc::now());
    ev.set("winlog.channel", "Security");
    ev.set("winlog.event_id", 4688);
    ev.set("winlog.event_data.NewProcessName", "C:\\cmd.exe");
    assert_eq!(e.matches(&ev).len(), 1);
}

#[test]
fn filters_exclude_events_from_named_rules() {
    let yaml = format!(
        "{}---\ntitle: f\nlogsource:\n  product: windows\n  category: process_creation\n\
         filter:\n  rules:\n    - r1\n  selection:\n    User|startswith: adm_\n  condition: selection\n",
        rule("  sel:\n    Image|endswith: cmd.exe\n  condition: sel\n")
    );
    let e = engine(&yaml);
    assert!(hits(&e, json!({"Image": "cmd.exe", "User": "bob"})));
    assert!(!hits(&e, json!({"Image": "cmd.exe", "User": "adm_bob"})));
}

#[test]
fn invalid_rules_are_reported_not_loaded() {
    for bad in [
        "title: x\nlogsource: {product: windows}\ndetection:\n  sel: {A: b}\n  condition: nope\n",
        "title: x\nlogsource: {product: windows}\ndetection:\n  sel: {A|bogus: b}\n  condition: sel\n",
        "title: x\nlogsource: {product: windows}\n",
        "::: not yaml",
        "title: x\nlogsource: {product: windows}\ndetection:\n  sel: {A|re: '(('}\n  condition: sel\n",
    ] {
        let (set, reports) = RuleSet::from_yaml_str(bad, &LoadOptions::default());
        assert_eq!(set.len(), 0);
        assert!(!reports[0].status.is_loaded(), "{bad}");
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    const RULES: &str = "title: a\nid: a\nlogsource: {product: windows, category: process_creation}\n\
detection:\n  s1:\n    CommandLine|contains: ['ab', 'cd']\n  s2:\n    Image|endswith: 'x.exe'\n  f:\n    User: 'bo*'\n  condition: (s1 or s2) and not f\n\
---\ntitle: b\nid: b\nlogsource: {product: windows, category: process_creation}\n\
detection:\n  s:\n    CommandLine|contains|all: ['a', 'bc']\n  k:\n    - 'dd'\n  condition: s or k\n\
---\ntitle: c\nid: c\nlogsource: {product: windows, service: security}\n\
detection:\n  s:\n    EventID: 4688\n    NewProcessName|re: '^[abc]+$'\n  condition: s\n\
---\ntitle: d\nid: d\nlogsource: {product: windows, category: process_creation}\n\
detection:\n  s:\n    CommandLine: '*a?c*'\n    Image|startswith: 'a'\n  condition: all of them\n";

    proptest! {
        /// Every text a regex matches holds, lower-cased, one of the regex's prefilter
        /// literals.
        #[test]
        fn regex_literals_occur_in_every_match(
            pat in proptest::sample::select(vec![
                "ab+c", "(?:xy|zz)q", "a[bc]d", "^abc", "ab$", "(?i)ab", "(?i)k[a-c]", "x(ab|cd)*yz",
                "[ab]{2}c", "abc|d.e", "(?i)sk", "(?i)(as|ks)", "(?i)ask\\d", "[ab]+cde[xy]", "(?i)[ab]+skq[xy]",
            ]),
            t in proptest::string::string_regex("[abcdeksSxyzqABCK\u{17f}\u{212a} .]{0,12}").unwrap(),
        ) {
            let Ok(re) = regex::Regex::new(pat) else { return Ok(()) };
            if let Some(lits) = crate::ir::regex_facts(pat, false, false, false).literals
                && re.is_match(&t)
            {
                let lower = t.to_lowercase();
                prop_assert!(lits.iter().any(|l| lower.contains(l.as_str())), "{pat} {t:?} {lits:?}");
            }
        }
    }

    proptest! {
        /// The character-run shortcut answers as the regex does.
        #[test]
        fn char_runs_answer_as_the_regex(
            pat in proptest::sample::select(vec![".{3,}", ".{2,4}", "(?s).{3,}", ".{1,}"]),
            t in proptest::string::string_regex("[a\u{e9}\u{1f600}\n\r ]{0,8}").unwrap(),
        ) {
            let re = regex::Regex::new(pat).unwrap();
            let run = crate::ir::regex_facts(pat, false, false, false).run;
            prop_assert!(run.is_some(), "{pat}");
            if let Some(run) = run {
                prop_assert_eq!(run.test(&t), re.is_match(&t), "{} {:?}", pat, t);
            }
        }
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[abcdx.eoAB ]{0,8}").unwrap()
    }

    const FIELDS: [&str; 4] = ["CommandLine", "Image", "User", "ParentImage"];

    /// One random value of an event field: absent, text, number, null or a list.
    fn field_value() -> impl Strategy<Value = Option<serde_json::Value>> {
        prop_oneof![
            3 => proptest::string::string_regex("[abÄä.B12*]{0,6}")
                .unwrap()
                .prop_map(|s| Some(json!(s))),
            1 => Just(None),
            1 => (0u32..20).prop_map(|n| Some(json!(n))),
            1 => Just(Some(serde_json::Value::Null)),
            1 => proptest::collection::vec("[abB.]{0,4}", 0..3).prop_map(|v| Some(json!(v))),
        ]
    }

    /// One random search: one to three field items with random modifiers and values.
    fn selection() -> impl Strategy<Value = String> {
        let item = (
            0usize..FIELDS.len(),
            prop_oneof![
                3 => Just(""),
                3 => Just("|contains"),
                2 => Just("|startswith"),
                2 => Just("|endswith"),
                2 => Just("|contains|all"),
                1 => Just("|contains|cased"),
                1 => Just("|re"),
                1 => Just("|re|i"),
                1 => Just("|exists"),
                1 => Just("|fieldref"),
                1 => Just("|lt"),
            ],
            proptest::collection::vec(
                proptest::string::string_regex("[abä.B1*?]{1,3}").unwrap(),
                1..3,
            ),
            any::<bool>(),
        )
            .prop_map(|(f, m, vals, null)| {
                let field = FIELDS[f];
                let vals: Vec<String> = match m {
                    "|exists" => vec![if null { "true" } else { "false" }.to_owned()],
                    "|fieldref" => vec![FIELDS[(f + 1) % FIELDS.len()].to_owned()],
                    "|lt" => vec![format!("{}", vals[0].len() * 3)],
                    "|re" | "|re|i" => vals
                        .iter()
                        .map(|v| format!("'{}'", v.replace('*', ".*").replace('?', ".")))
                        .collect(),
                    _ if null => vec!["null".to_owned()],
                    _ => vals.iter().map(|v| format!("'{v}'")).collect(),
                };
                format!("    {field}{m}: [{}]\n", vals.join(", "))
            });
        proptest::collection::vec(item, 1..4).prop_map(|items| {
            // Repeated keys are not valid YAML maps; keep the first of each field.
            let mut seen = Vec::new();
            items
                .into_iter()
                .filter(|i| {
                    let key = i.split(':').next().unwrap_or_default().to_owned();
                    let new = !seen.contains(&key);
                    seen.push(key);
                    new
                })
                .collect::<String>()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prefiltered_engine_agrees_with_plain_interpreter(
            cmd in text(), img in text(), user in text(), sec in any::<bool>()
        ) {
            let (set, _) = RuleSet::from_yaml_str(RULES, &LoadOptions::default());
            let e = Engine::new(set);
            let mut ev = Event::new(chrono::Utc::now());
            if sec {
                ev.set("winlog.channel", "Security");
                ev.set("winlog.event_id", 4688);
                ev.set("winlog.event_data.NewProcessName", img);
            } else {
                ev.set("winlog.channel", "Microsoft-Windows-Sysmon/Operational");
                ev.set("winlog.event_id", 1);
                ev.set("winlog.event_data.Image", img);
            }
            ev.set("winlog.event_data.CommandLine", cmd);
            ev.set("winlog.event_data.User", user);
            let mut fast: Vec<usize> = e.matches(&ev).iter().map(|m| m.rule_index).collect();
            fast.sort_unstable();
            prop_assert_eq!(fast, e.matches_unfiltered(&ev));
        }

        #[test]
        fn random_rules_agree_with_plain_interpreter(
            sels in proptest::collection::vec(selection(), 1..4),
            cond in 0usize..4,
            kw in proptest::option::of(proptest::collection::vec(text(), 1..3)),
            vals in proptest::collection::vec(field_value(), 4),
            user_data in 0usize..6,
            event_id in prop_oneof![Just(1u64), Just(4688)],
        ) {
            let mut det = String::new();
            for (i, s) in sels.iter().enumerate() {
                det.push_str(&format!("  s{i}:\n{s}"));
            }
            let n = sels.len();
            let mut condition = match cond {
                0 => "all of s*".to_owned(),
                1 => "1 of s*".to_owned(),
                2 => format!("s0 and not s{}", n - 1),
                _ => format!("not s0 or s{}", n - 1),
            };
            if let Some(words) = &kw {
                det.push_str("  k:\n");
                for w in words {
                    det.push_str(&format!("    - '{w}'\n"));
                }
                condition = format!("({condition}) or k");
            }
            let yaml = format!(
                "title: r\nid: r\nlogsource: {{product: windows, category: process_creation}}\n\
                 detection:\n{det}  condition: {condition}\n"
            );
            let (set, reports) = RuleSet::from_yaml_str(&yaml, &LoadOptions::default());
            prop_assume!(reports.iter().all(|r| r.status.is_loaded()));
            let e = Engine::new(set);
            let mut ev = Event::new(chrono::Utc::now());
            ev.set("winlog.channel", "Microsoft-Windows-Sysmon/Operational");
            ev.set("winlog.event_id", event_id);
            for (i, (name, v)) in FIELDS.iter().zip(vals).enumerate() {
                if let Some(v) = v {
                    let prefix = if user_data == i {
                        "winlog.user_data."
                    } else {
                        "winlog.event_data."
                    };
                    ev.set(&format!("{prefix}{name}"), v);
                }
            }
            let mut fast: Vec<usize> = e.matches(&ev).iter().map(|m| m.rule_index).collect();
            fast.sort_unstable();
            prop_assert_eq!(fast, e.matches_unfiltered(&ev), "{}", yaml);
        }

        #[test]
        fn rule_parser_never_panics(s in ".{0,200}") {
            let (_set, _reports) = RuleSet::from_yaml_str(&s, &LoadOptions::default());
            prop_assert!(true);
        }
    }
}

#[test]
fn documents_split_at_separator_lines_only() {
    let text = "---\ntitle: a\ndescription: x --- y\n---\n# comment only\n---\ntitle: b\n...\n";
    let docs = crate::split_documents(text);
    assert_eq!(docs, vec!["title: a\ndescription: x --- y\n", "title: b\n"]);
}

#[test]
fn engines_built_with_new_rules_share_indicator_sets() {
    let first = engine(&rule(
        "  sel:\n    Image|endswith: '\\\\a.exe'\n  condition: sel",
    ));
    let second = first.with_rules(
        RuleSet::from_yaml_str(
            &rule("  sel:\n    Image|endswith: '\\\\b.exe'\n  condition: sel"),
            &LoadOptions::default(),
        )
        .0,
    );
    assert!(hits(&second, json!({"Image": "C:\\b.exe"})));
    assert!(!hits(&second, json!({"Image": "C:\\a.exe"})));
    let mut set = crate::IndicatorSet::new("feed");
    set.insert(&crate::Indicator {
        value: "198.51.100.7".into(),
        kind: None,
        expires: None,
    })
    .expect("valid indicator");
    first.set_indicators(set);
    assert_eq!(second.indicator_sets().len(), 1);
    assert!(second.remove_indicators("feed"));
    assert!(first.indicator_sets().is_empty());
}

#[test]
fn correlation_windows_survive_a_rule_set_change() {
    let base = "title: failed logon\nid: base-1\nname: failed\nlogsource:\n  product: windows\n  \
                service: security\ndetection:\n  sel:\n    EventID: 4625\n  condition: sel\n";
    let corr = "title: burst\nid: corr-1\ncorrelation:\n  type: event_count\n  rules:\n    - failed\n  \
                group-by:\n    - TargetUserName\n  timespan: 5m\n  condition:\n    gte: 2\n";
    let other = "title: other\nid: other-1\nlogsource:\n  product: windows\n  service: system\n\
                 detection:\n  sel:\n    EventID: 7045\n  condition: sel\n";
    let opts = LoadOptions::default();
    let (old, _) = RuleSet::from_texts(vec![(None, base.into()), (None, corr.into())], &opts);
    let old = Engine::new(old);
    let mut ev = Event::new(chrono::Utc::now());
    ev.set("winlog.channel", "Security");
    ev.set("winlog.event_id", 4625);
    ev.set("winlog.event_data.TargetUserName", "bob");
    let mut c = crate::Correlator::new();
    for m in old.matches(&ev) {
        assert!(c.process(old.ruleset(), &m, &ev).is_empty());
    }
    // A rule is added before the base rule: indexes move, the window must follow.
    let (new, _) = RuleSet::from_texts(
        vec![
            (None, other.into()),
            (None, base.into()),
            (None, corr.into()),
        ],
        &opts,
    );
    let new = old.with_rules(new);
    c.carry_over(old.ruleset(), new.ruleset());
    let fired: Vec<_> = new
        .matches(&ev)
        .iter()
        .flat_map(|m| c.process(new.ruleset(), m, &ev))
        .collect();
    assert_eq!(fired.len(), 1, "second failed logon completes the burst");
}

proptest::proptest! {
    /// Rule texts come from the API: splitting and describing any text never panics, and the
    /// split keeps every line that is not a separator.
    #[test]
    fn splitting_and_describing_any_text_never_panics(
        text in "(---\n|\\.\\.\\.\n|title: [a-z]{0,4}\n|id: [0-9a-f-]{0,8}\n|[ -~]{0,12}\n|# c\n){0,12}"
    ) {
        let docs = crate::split_documents(&text);
        for d in &docs {
            let _ = crate::describe(d);
            proptest::prop_assert!(!d.lines().any(|l| l.trim_end() == "---"));
        }
        let _ = crate::describe(&text);
    }
}
