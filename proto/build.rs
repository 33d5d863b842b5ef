//! Compiles the `.proto` files with `protox` (pure Rust), so no system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "metadata.proto",
            "controller.proto",
            "raft.proto",
            "replication.proto",
            "groups.proto",
            "transactions.proto",
        ],
        ["proto"],
    )?;
    // Replicated batches travel as `Bytes`: read from the log and decoded without a copy.
    tonic_prost_build::configure()
        .bytes(".spate.replication.FetchedPartition.records")
        .compile_fds(fds)?;
    Ok(())
}
