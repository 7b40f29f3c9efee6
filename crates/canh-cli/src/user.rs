//! `canh user`: manage SOAR users offline (the first administrator is created this way).

use anyhow::{Context, bail};
use std::io::BufRead;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub(crate) struct UserArgs {
    #[command(subcommand)]
    cmd: UserCmd,
}

#[derive(clap::Subcommand, Debug)]
enum UserCmd {
    /// Add a user. The password is read from standard input (one line).
    Add {
        /// Login name.
        name: String,
        /// administrator, soc_lead, analyst, agency_viewer or auditor.
        #[arg(long)]
        role: String,
        /// Agency id (required for agency_viewer: the user sees that agency's subtree only).
        #[arg(long)]
        agency: Option<i64>,
        /// Read the password from standard input (required: never on the command line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Turn the TOTP second factor (RFC 6238) on or off. `--enable` prints the secret and its
    /// otpauth:// URI once; from then on login needs the current code.
    Totp {
        /// Login name.
        name: String,
        /// Generate a new secret and require codes at login.
        #[arg(long, conflicts_with = "disable", required_unless_present = "disable")]
        enable: bool,
        /// Stop requiring codes.
        #[arg(long)]
        disable: bool,
    },
}

pub(crate) fn cli_actor() -> canh_soar::Actor {
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    canh_soar::Actor {
        user_id: None,
        name: format!("cli:{who}"),
        source: "cli".into(),
    }
}

pub(crate) fn open_soar(
    rt: &tokio::runtime::Runtime,
    data_dir: &Path,
) -> anyhow::Result<canh_soar::Soar> {
    let profiles = canh_soar::ProfileSet::bundled(canh_soar::profile::DEFAULT_PROFILE)?;
    rt.block_on(canh_soar::Soar::open(
        data_dir,
        profiles,
        std::sync::Arc::new(canh_soar::SystemClock),
        canh_soar::Settings::default(),
    ))
    .with_context(|| format!("opening the SOAR database under {}", data_dir.display()))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

pub(crate) fn run(args: UserArgs, data_dir: &Path) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let soar = open_soar(&rt, data_dir)?;
    match args.cmd {
        UserCmd::Add {
            name,
            role,
            agency,
            password_stdin,
        } => {
            if !password_stdin {
                bail!("pass the password on standard input with --password-stdin");
            }
            let role = canh_soar::Role::parse(&role)?;
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let user =
                rt.block_on(soar.create_user(&cli_actor(), &name, role, agency, password))?;
            println!(
                "created user {} (id {}, role {})",
                user.name,
                user.id,
                user.role.as_str()
            );
        }
        UserCmd::Totp {
            name,
            enable,
            disable: _,
        } => {
            let user = rt.block_on(soar.user_by_name(&name))?;
            if enable {
                let e = rt.block_on(soar.totp_enrol(&cli_actor(), user.id, false))?;
                println!(
                    "TOTP enabled for {} / đã bật TOTP cho {}",
                    user.name, user.name
                );
                println!("secret: {}", e.secret);
                println!("{}", e.otpauth_uri);
                println!(
                    "Shown once: add it to an authenticator app now. \
                     / Chỉ hiển thị một lần: hãy thêm vào ứng dụng xác thực ngay."
                );
            } else {
                rt.block_on(soar.totp_disable(&cli_actor(), user.id))?;
                println!(
                    "TOTP disabled for {} / đã tắt TOTP cho {}",
                    user.name, user.name
                );
            }
        }
        UserCmd::List => {
            for u in rt.block_on(soar.users())? {
                let agency = u
                    .agency_id
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "-".into());
                println!("{}\t{}\t{}\t{}", u.id, u.name, u.role.as_str(), agency);
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        user: UserArgs,
    }

    #[test]
    fn totp_needs_exactly_one_of_enable_and_disable() {
        assert!(Cli::try_parse_from(["canh", "totp", "an"]).is_err());
        assert!(Cli::try_parse_from(["canh", "totp", "an", "--enable", "--disable"]).is_err());
        assert!(Cli::try_parse_from(["canh", "totp", "an", "--enable"]).is_ok());
        assert!(Cli::try_parse_from(["canh", "totp", "an", "--disable"]).is_ok());
    }

    #[test]
    fn totp_enable_then_disable_on_a_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime().unwrap();
        let soar = open_soar(&rt, dir.path()).unwrap();
        let u = rt
            .block_on(soar.create_user(
                &cli_actor(),
                "an",
                canh_soar::Role::Analyst,
                None,
                "mật-khẩu-đủ-dài-1",
            ))
            .unwrap();
        let args = |flag: &str| {
            Cli::try_parse_from(["canh", "totp", "an", flag])
                .unwrap()
                .user
        };
        assert_eq!(run(args("--enable"), dir.path()).unwrap(), 0);
        assert!(rt.block_on(soar.totp_enabled(u.id)).unwrap());
        assert!(
            rt.block_on(soar.login("an", "mật-khẩu-đủ-dài-1", "t"))
                .is_err()
        );
        assert_eq!(run(args("--disable"), dir.path()).unwrap(), 0);
        assert!(!rt.block_on(soar.totp_enabled(u.id)).unwrap());
        assert!(
            rt.block_on(soar.login("an", "mật-khẩu-đủ-dài-1", "t"))
                .is_ok()
        );
        let missing = Cli::try_parse_from(["canh", "totp", "nobody", "--enable"])
            .unwrap()
            .user;
        assert!(run(missing, dir.path()).is_err());
    }
}
