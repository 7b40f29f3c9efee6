//! Linux authentication messages (the auth/authpriv facility): `sshd`, `sudo`, `su`,
//! `pam_unix(…)` from any program, `useradd`/`groupadd`/`userdel`, `passwd`, `systemd-logind`.

use std::sync::LazyLock;

use canh_core::{Event, fields as f};
use regex::Regex;

use super::{Confidence, LogParser, ParseCtx, ParseError};
use crate::dispatch::{self, Matched};
use crate::norm::{self, ocsf};

/// Parser for Linux authentication messages.
pub struct LinuxAuthParser;

const ID: &str = "linux_auth";

// The patterns below are constant and covered by the tests of this file, so building them
// cannot fail at run time.
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant regex is valid")
}

static SSH_LOGIN: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(Accepted|Failed) (\S+) for (invalid user )?(\S*?) from (\S+) port (\d+)(?: (\S+))?")
});
static SSH_INVALID: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[Ii]nvalid user (\S*) from (\S+)(?: port (\d+))?"));
static SSH_CLOSED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(Disconnected from|Connection closed by|Connection reset by|Received disconnect from) (?:(?:invalid |authenticating )?user (\S+) )?([0-9A-Fa-f.:]+?):?(?: port (\d+)|\s|$)",
    )
});
static SSH_MAXAUTH: LazyLock<Regex> = LazyLock::new(|| {
    re(r"maximum authentication attempts exceeded for (invalid user )?(\S+) from (\S+) port (\d+)")
});
static PAM_SESSION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^pam_unix\(([^:)]+):session\): session (opened|closed) for user ([^\s(]+)(?:\(uid=\d+\))?(?: by ([^\s(]*)(?:\(uid=(\d+)\))?)?",
    )
});
static SUDO: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*(\S+) : (?:(.*?) ; )?TTY=(\S+) ; PWD=(.*?) ; USER=(\S+) ;(?:.*?;)? COMMAND=(.*)$")
});
static SU_SHADOW: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(FAILED SU )?\(to (\S+)\) (\S+) on (\S+)"));
static SU_UTIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(FAILED su|Successful su) for (\S+) by (\S+)"));
static NEW_USER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^new user: name=([^,]+), UID=(\d+), GID=(\d+), home=([^,]+), shell=([^,]+)")
});
static NEW_GROUP: LazyLock<Regex> = LazyLock::new(|| re(r"^new group: name=([^,]+), GID=(\d+)"));
static DEL_USER: LazyLock<Regex> = LazyLock::new(|| re(r"^delete user '([^']+)'"));
static PASSWD: LazyLock<Regex> =
    LazyLock::new(|| re(r"^pam_unix\(([^:)]+):chauthtok\): password changed for (\S+)"));
static LOGIND: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(New|Removed) session (\S+?) of user (\S+?)\.?$"));

fn auth(ev: &mut Event, action: &str, outcome: &str, types: &[&str]) {
    norm::set_list(ev, f::EVENT_CATEGORY, &["authentication"]);
    norm::set_list(ev, f::EVENT_TYPE, types);
    ev.set(f::EVENT_ACTION, action);
    ev.set(f::EVENT_OUTCOME, outcome);
}

fn matched(dataset: &'static str, class_uid: u32) -> Option<Matched> {
    Some(Matched {
        module: ID,
        dataset,
        class_uid,
    })
}

/// Program parser entry point (see [`crate::dispatch`]).
pub(crate) fn apply(program: Option<&str>, msg: &str, ev: &mut Event) -> Option<Matched> {
    let prog = program.unwrap_or("");
    if msg.starts_with("pam_unix(") {
        return pam(msg, ev);
    }
    match prog {
        "sshd" | "sshd-session" => sshd(msg, ev),
        "sudo" => sudo(msg, ev),
        "su" => su(msg, ev),
        "useradd" | "groupadd" | "userdel" | "groupdel" | "usermod" => accounts(msg, ev),
        "systemd-logind" => logind(msg, ev),
        _ => None,
    }
}

fn sshd(msg: &str, ev: &mut Event) -> Option<Matched> {
    if let Some(c) = SSH_LOGIN.captures(msg) {
        let ok = &c[1] == "Accepted";
        auth(
            ev,
            "ssh_login",
            if ok { "success" } else { "failure" },
            &["start"],
        );
        ev.set("system.auth.ssh.method", &c[2]);
        if c.get(3).is_some() {
            ev.set("system.auth.ssh.invalid_user", true);
        }
        norm::set_text(ev, f::USER_NAME, &c[4]);
        norm::set_ip(ev, f::SOURCE_IP, &c[5]);
        norm::set_port(ev, f::SOURCE_PORT, &c[6]);
        if let Some(sig) = c.get(7) {
            ev.set(
                "system.auth.ssh.protocol",
                sig.as_str().trim_end_matches(':'),
            );
        }
        return matched("linux_auth.sshd", ocsf::AUTHENTICATION);
    }
    if let Some(c) = SSH_INVALID.captures(msg) {
        auth(ev, "ssh_invalid_user", "failure", &["start"]);
        norm::set_text(ev, f::USER_NAME, &c[1]);
        ev.set("system.auth.ssh.invalid_user", true);
        norm::set_ip(ev, f::SOURCE_IP, &c[2]);
        if let Some(p) = c.get(3) {
            norm::set_port(ev, f::SOURCE_PORT, p.as_str());
        }
        return matched("linux_auth.sshd", ocsf::AUTHENTICATION);
    }
    if let Some(c) = SSH_MAXAUTH.captures(msg) {
        auth(ev, "ssh_max_auth_exceeded", "failure", &["start"]);
        norm::set_text(ev, f::USER_NAME, &c[2]);
        norm::set_ip(ev, f::SOURCE_IP, &c[3]);
        norm::set_port(ev, f::SOURCE_PORT, &c[4]);
        return matched("linux_auth.sshd", ocsf::AUTHENTICATION);
    }
    if let Some(c) = SSH_CLOSED.captures(msg) {
        let action = match &c[1] {
            "Disconnected from" | "Received disconnect from" => "ssh_disconnect",
            _ => "ssh_connection_closed",
        };
        norm::set_list(ev, f::EVENT_CATEGORY, &["authentication", "network"]);
        norm::set_list(ev, f::EVENT_TYPE, &["end"]);
        ev.set(f::EVENT_ACTION, action);
        if let Some(u) = c.get(2) {
            ev.set(f::USER_NAME, u.as_str());
        }
        norm::set_ip(ev, f::SOURCE_IP, &c[3]);
        if let Some(p) = c.get(4) {
            norm::set_port(ev, f::SOURCE_PORT, p.as_str());
        }
        if msg.ends_with("[preauth]") {
            ev.set("system.auth.ssh.preauth", true);
        }
        return matched("linux_auth.sshd", ocsf::AUTHENTICATION);
    }
    None
}

fn pam(msg: &str, ev: &mut Event) -> Option<Matched> {
    if let Some(c) = PAM_SESSION.captures(msg) {
        let opened = &c[2] == "opened";
        norm::set_list(ev, f::EVENT_CATEGORY, &["authentication", "session"]);
        norm::set_list(ev, f::EVENT_TYPE, &[if opened { "start" } else { "end" }]);
        ev.set(
            f::EVENT_ACTION,
            if opened {
                "session_opened"
            } else {
                "session_closed"
            },
        );
        ev.set(f::EVENT_OUTCOME, "success");
        ev.set("system.auth.pam.service", &c[1]);
        ev.set(f::USER_NAME, &c[3]);
        if let Some(by) = c.get(4).filter(|m| !m.as_str().is_empty()) {
            ev.set("user.effective.name", by.as_str());
        }
        return matched("linux_auth.pam", ocsf::AUTHENTICATION);
    }
    if let Some(c) = PASSWD.captures(msg) {
        norm::set_list(ev, f::EVENT_CATEGORY, &["iam"]);
        norm::set_list(ev, f::EVENT_TYPE, &["user", "change"]);
        ev.set(f::EVENT_ACTION, "password_changed");
        ev.set(f::EVENT_OUTCOME, "success");
        ev.set("system.auth.pam.service", &c[1]);
        ev.set(f::USER_NAME, &c[2]);
        return matched("linux_auth.pam", ocsf::ACCOUNT_CHANGE);
    }
    let rest = msg.strip_prefix("pam_unix(")?;
    let (service, tail) = rest.split_once(':')?;
    let detail = tail.split_once("): ").map(|(_, d)| d)?;
    if !detail.starts_with("authentication failure") {
        return None;
    }
    auth(ev, "authentication_failure", "failure", &["start"]);
    ev.set("system.auth.pam.service", service);
    for word in detail.split_whitespace() {
        if let Some((k, v)) = word.split_once('=') {
            match k {
                "user" => norm::set_text(ev, f::USER_NAME, v),
                "rhost" => norm::set_ip(ev, f::SOURCE_IP, v),
                "ruser" => norm::set_text(ev, "system.auth.pam.ruser", v),
                "tty" => norm::set_text(ev, "system.auth.pam.tty", v),
                _ => {}
            }
        }
    }
    matched("linux_auth.pam", ocsf::AUTHENTICATION)
}

fn sudo(msg: &str, ev: &mut Event) -> Option<Matched> {
    let c = SUDO.captures(msg)?;
    let problem = c.get(2).map(|m| m.as_str());
    let ok = problem.is_none();
    norm::set_list(ev, f::EVENT_CATEGORY, &["authentication", "process"]);
    norm::set_list(ev, f::EVENT_TYPE, &["start"]);
    ev.set(f::EVENT_ACTION, "sudo_command");
    ev.set(f::EVENT_OUTCOME, if ok { "success" } else { "failure" });
    ev.set(f::USER_NAME, &c[1]);
    if let Some(p) = problem {
        ev.set("system.auth.sudo.error", p);
    }
    ev.set("system.auth.sudo.tty", &c[3]);
    ev.set("system.auth.sudo.pwd", &c[4]);
    ev.set("user.effective.name", &c[5]);
    ev.set(f::PROCESS_COMMAND_LINE, &c[6]);
    matched("linux_auth.sudo", ocsf::PROCESS_ACTIVITY)
}

fn su(msg: &str, ev: &mut Event) -> Option<Matched> {
    let (failed, target, user) = if let Some(c) = SU_SHADOW.captures(msg) {
        ev.set("system.auth.su.tty", &c[4]);
        (c.get(1).is_some(), c[2].to_owned(), c[3].to_owned())
    } else if let Some(c) = SU_UTIL.captures(msg) {
        (&c[1] == "FAILED su", c[2].to_owned(), c[3].to_owned())
    } else {
        return None;
    };
    auth(
        ev,
        "su",
        if failed { "failure" } else { "success" },
        &["start"],
    );
    ev.set(f::USER_NAME, user);
    ev.set("user.effective.name", target);
    matched("linux_auth.su", ocsf::AUTHENTICATION)
}

fn iam(ev: &mut Event, action: &str, types: &[&str]) {
    norm::set_list(ev, f::EVENT_CATEGORY, &["iam"]);
    norm::set_list(ev, f::EVENT_TYPE, types);
    ev.set(f::EVENT_ACTION, action);
    ev.set(f::EVENT_OUTCOME, "success");
}

fn accounts(msg: &str, ev: &mut Event) -> Option<Matched> {
    if let Some(c) = NEW_USER.captures(msg) {
        iam(ev, "user_created", &["user", "creation"]);
        ev.set("user.target.name", &c[1]);
        norm::set_int(ev, "user.target.id", &c[2]);
        norm::set_int(ev, "user.target.group.id", &c[3]);
        ev.set("system.auth.useradd.home", &c[4]);
        ev.set("system.auth.useradd.shell", &c[5]);
    } else if let Some(c) = NEW_GROUP.captures(msg) {
        iam(ev, "group_created", &["group", "creation"]);
        ev.set("group.name", &c[1]);
        norm::set_int(ev, "group.id", &c[2]);
    } else if let Some(c) = DEL_USER.captures(msg) {
        iam(ev, "user_deleted", &["user", "deletion"]);
        ev.set("user.target.name", &c[1]);
    } else {
        return None;
    }
    matched("linux_auth.accounts", ocsf::ACCOUNT_CHANGE)
}

fn logind(msg: &str, ev: &mut Event) -> Option<Matched> {
    let c = LOGIND.captures(msg)?;
    let new = &c[1] == "New";
    norm::set_list(ev, f::EVENT_CATEGORY, &["session"]);
    norm::set_list(ev, f::EVENT_TYPE, &[if new { "start" } else { "end" }]);
    ev.set(
        f::EVENT_ACTION,
        if new {
            "logind_session_opened"
        } else {
            "logind_session_closed"
        },
    );
    ev.set("system.auth.session.id", &c[2]);
    ev.set(f::USER_NAME, &c[3]);
    matched("linux_auth.logind", ocsf::AUTHENTICATION)
}

impl LogParser for LinuxAuthParser {
    fn id(&self) -> &'static str {
        ID
    }

    fn describe(&self) -> &'static str {
        "Linux authentication messages: sshd, sudo, su, pam_unix, useradd, systemd-logind"
    }

    fn probe(&self, raw: &[u8]) -> Confidence {
        // Bare message bodies only; with a syslog header the syslog parsers dispatch here.
        let head = &raw[..raw.len().min(64)];
        if head.starts_with(b"pam_unix(") || head.starts_with(b"Accepted ") {
            Confidence::Medium
        } else {
            Confidence::No
        }
    }

    fn parse(&self, raw: &[u8], cx: &ParseCtx) -> Result<Event, ParseError> {
        dispatch::parse_standalone(ID, raw, cx, apply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(prog: &str, msg: &str) -> Event {
        let mut ev = Event::new(chrono::Utc::now());
        assert!(apply(Some(prog), msg, &mut ev).is_some(), "{msg}");
        ev
    }

    #[test]
    fn ssh_failed_password_for_invalid_user() {
        let ev = run(
            "sshd",
            "Failed password for invalid user admin from 203.0.113.9 port 41234 ssh2",
        );
        assert_eq!(ev.get_str("event.outcome"), Some("failure"));
        assert_eq!(ev.get_str("user.name"), Some("admin"));
        assert_eq!(ev.get_str("source.ip"), Some("203.0.113.9"));
        assert_eq!(ev.get("source.port"), Some(&41234.into()));
    }

    #[test]
    fn sudo_failure_keeps_error_and_command() {
        let ev = run(
            "sudo",
            "    bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/bob ; USER=root ; COMMAND=/usr/bin/id",
        );
        assert_eq!(ev.get_str("event.outcome"), Some("failure"));
        assert_eq!(ev.get_str("process.command_line"), Some("/usr/bin/id"));
        assert_eq!(ev.get_str("user.effective.name"), Some("root"));
    }

    #[test]
    fn pam_auth_failure_reads_rhost_and_user() {
        let ev = run(
            "sshd",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7  user=root",
        );
        assert_eq!(ev.get_str("source.ip"), Some("198.51.100.7"));
        assert_eq!(ev.get_str("user.name"), Some("root"));
    }

    #[test]
    fn unrelated_messages_are_left_alone() {
        let mut ev = Event::new(chrono::Utc::now());
        assert!(
            apply(
                Some("sshd"),
                "Server listening on 0.0.0.0 port 22.",
                &mut ev
            )
            .is_none()
        );
        assert!(ev.fields.is_empty());
    }
}
