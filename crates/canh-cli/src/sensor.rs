//! `canh sensor` (under construction).

/// Arguments of `canh sensor`.
#[derive(clap::Args, Debug)]
pub(crate) struct SensorArgs {}

pub(crate) fn run(_args: SensorArgs) -> anyhow::Result<i32> {
    anyhow::bail!("canh sensor is not available in this build yet")
}
