//! placeholder
#[derive(clap::Args)]
pub struct DevArgs {}
pub async fn run(_args: DevArgs) -> anyhow::Result<()> { anyhow::bail!("not yet built") }
