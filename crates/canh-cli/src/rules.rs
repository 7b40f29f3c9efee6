//! `canh rules` (under construction).

/// Arguments of `canh rules`.
#[derive(clap::Args, Debug)]
pub(crate) struct RulesArgs {}

pub(crate) fn run(_args: RulesArgs) -> anyhow::Result<i32> {
    anyhow::bail!("canh rules is not available in this build yet")
}
