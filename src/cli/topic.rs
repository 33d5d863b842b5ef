//! placeholder, replaced by the CLI work.
#[derive(clap::Args)]
pub struct TopicArgs {}
pub async fn run(_args: TopicArgs) -> anyhow::Result<()> { anyhow::bail!("not yet built") }
