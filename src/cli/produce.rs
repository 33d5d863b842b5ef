//! placeholder, replaced by the CLI work.
#[derive(clap::Args)]
pub struct ProduceArgs {}
pub async fn run(_args: ProduceArgs) -> anyhow::Result<()> { anyhow::bail!("not yet built") }
