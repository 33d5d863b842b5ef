//! placeholder, replaced by the CLI work.
#[derive(clap::Args)]
pub struct ConsumeArgs {}
pub async fn run(_args: ConsumeArgs) -> anyhow::Result<()> { anyhow::bail!("not yet built") }
