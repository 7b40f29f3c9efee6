//! `canh hunt` (under construction).

/// Arguments of `canh hunt`.
#[derive(clap::Args, Debug)]
pub(crate) struct HuntArgs {}

pub(crate) fn run(_args: HuntArgs) -> anyhow::Result<i32> {
    anyhow::bail!("canh hunt is not available in this build yet")
}
