//! The `docker` backend: the compose cluster of `deploy/docker/compose.yaml` (image built
//! by `deploy/docker/build-image.sh`), each node a container on a private network. Faults
//! are real: `docker kill`, `docker stop` (SIGTERM), `docker pause` (the cgroup freezer),
//! and `docker network disconnect` for a partition (the node loses every peer, the
//! controllers and the clients at once). Link delays need `tc` in the container, which a
//! `FROM scratch` image does not have, so `slow-followers` is process-only.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::Command;

/// Gives `dir` and everything in it to `uid`:`uid` (needs root, as the harness is in CI).
fn chown_tree(dir: &Path, uid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).with_context(|| {
        format!(
            "cannot chown {} (the docker corrupt nemesis runs as root)",
            dir.display()
        )
    })?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            chown_tree(&path, uid)?;
        } else {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid))?;
        }
    }
    Ok(())
}

/// A compose project started by the harness.
pub struct DockerCluster {
    compose: Vec<String>,
    project: String,
    file: PathBuf,
    image: String,
    ports: Vec<u16>,
    env: Vec<(String, String)>,
    isolated: parking_lot::Mutex<std::collections::BTreeSet<u32>>,
}

async fn run(cmd: &[String], env: &[(String, String)]) -> anyhow::Result<String> {
    let (program, args) = cmd.split_first().context("empty command")?;
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}{}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl DockerCluster {
    /// `up -d` of `compose_file` as a fresh project using `image`, host ports chosen free.
    pub async fn start(
        compose_file: &Path,
        image: &str,
        seed: u64,
    ) -> anyhow::Result<DockerCluster> {
        let compose = if Command::new("docker")
            .args(["compose", "version"])
            .output()
            .await
            .is_ok_and(|o| o.status.success())
        {
            strings(&["docker", "compose"])
        } else {
            strings(&["docker-compose"])
        };
        let mut ports = Vec::new();
        for _ in 0..3 {
            ports.push(
                std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port(),
            );
        }
        let mut env = vec![("SPATE_IMAGE".to_string(), image.to_string())];
        for (n, p) in ports.iter().enumerate() {
            env.push((format!("SPATE_EXTERNAL_PORT_{}", n + 1), p.to_string()));
        }
        let cluster = DockerCluster {
            compose,
            project: format!("spatechaos{}x{}", seed, std::process::id()),
            file: compose_file.to_path_buf(),
            image: image.to_string(),
            ports,
            env,
            isolated: Default::default(),
        };
        cluster.compose(&["up", "-d"]).await?;
        Ok(cluster)
    }

    async fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = self.compose.clone();
        cmd.extend(strings(&[
            "-f",
            &self.file.display().to_string(),
            "-p",
            &self.project,
        ]));
        cmd.extend(strings(args));
        run(&cmd, &self.env).await
    }

    async fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = strings(&["docker"]);
        cmd.extend(strings(args));
        run(&cmd, &self.env).await
    }

    /// Node ids.
    pub fn node_ids(&self) -> Vec<u32> {
        vec![1, 2, 3]
    }

    /// The container of node `id` (compose v1 and v2 name them alike with `-p`).
    async fn container(&self, id: u32) -> anyhow::Result<String> {
        let out = self
            .docker(&[
                "ps",
                "-a",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--filter",
                &format!("label=com.docker.compose.service=spate-{id}"),
                "--format",
                "{{.Names}}",
            ])
            .await?;
        out.lines()
            .next()
            .map(str::to_string)
            .with_context(|| format!("no container for spate-{id}"))
    }

    fn network(&self) -> String {
        format!("{}_spate", self.project)
    }

    /// Kafka bootstrap list (the EXTERNAL listeners).
    pub fn bootstrap(&self) -> String {
        let addrs: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        addrs.join(",")
    }

    /// Kafka address of each node.
    pub fn kafka_addrs(&self) -> Vec<(u32, String)> {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32 + 1, format!("127.0.0.1:{p}")))
            .collect()
    }

    /// `docker kill`.
    pub async fn kill(&self, id: u32) -> anyhow::Result<()> {
        let c = self.container(id).await?;
        self.docker(&["kill", &c]).await.map(drop)
    }

    /// `docker start`.
    pub async fn start_node(&self, id: u32) -> anyhow::Result<()> {
        let c = self.container(id).await?;
        self.docker(&["start", &c]).await.map(drop)
    }

    /// `docker stop` (SIGTERM, controlled shutdown).
    pub async fn stop(&self, id: u32, timeout: Duration) -> anyhow::Result<()> {
        let c = self.container(id).await?;
        let t = timeout.as_secs().max(1).to_string();
        self.docker(&["stop", "-t", &t, &c]).await.map(drop)
    }

    /// `docker pause`.
    pub async fn pause(&self, id: u32) -> anyhow::Result<()> {
        let c = self.container(id).await?;
        self.docker(&["pause", &c]).await.map(drop)
    }

    /// `docker unpause`.
    pub async fn resume(&self, id: u32) -> anyhow::Result<()> {
        let c = self.container(id).await?;
        self.docker(&["unpause", &c]).await.map(drop)
    }

    /// Disconnects the node from the compose network: a real partition.
    pub async fn isolate(&self, id: u32) -> anyhow::Result<()> {
        let c = self.container(id).await?;
        self.isolated.lock().insert(id);
        self.docker(&["network", "disconnect", &self.network(), &c])
            .await
            .map(drop)
    }

    /// Reconnects every isolated node.
    pub async fn heal(&self) -> anyhow::Result<()> {
        let isolated: Vec<u32> = std::mem::take(&mut *self.isolated.lock())
            .into_iter()
            .collect();
        for id in isolated {
            self.reconnect(id).await?;
        }
        Ok(())
    }

    /// Reconnects an isolated node under its service name.
    pub async fn reconnect(&self, id: u32) -> anyhow::Result<()> {
        let c = self.container(id).await?;
        let alias = format!("spate-{id}");
        self.docker(&["network", "connect", "--alias", &alias, &self.network(), &c])
            .await
            .map(drop)
    }

    /// The Raft leader of the controller quorum (`spate cluster info` in a running node).
    pub async fn active_controller(&self) -> Option<u32> {
        for id in self.node_ids() {
            let Ok(c) = self.container(id).await else {
                continue;
            };
            let Ok(out) = self
                .docker(&[
                    "exec",
                    &c,
                    "/spate",
                    "cluster",
                    "info",
                    "--controllers",
                    "127.0.0.1:9093",
                ])
                .await
            else {
                continue;
            };
            let leader = out
                .lines()
                .find_map(|l| l.trim().strip_prefix("leader: "))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            if leader.is_some() {
                return leader;
            }
        }
        None
    }

    /// Whether the container runs.
    pub async fn is_running(&self, id: u32) -> bool {
        let Ok(c) = self.container(id).await else {
            return false;
        };
        self.docker(&["inspect", "-f", "{{.State.Running}}", &c])
            .await
            .is_ok_and(|o| o.trim() == "true")
    }

    /// Flips bytes in the newest segment of `dir_prefix` partitions of a stopped node:
    /// copies the volume's file out, flips, copies it back.
    pub async fn corrupt(
        &self,
        id: u32,
        topic: &str,
        partition: i32,
        seed: u64,
    ) -> anyhow::Result<String> {
        let c = self.container(id).await?;
        let tmp = std::env::temp_dir().join(format!("spate-chaos-{}-{id}", self.project));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let src = format!("{c}:/var/lib/spate/data/logs/{topic}-{partition}");
        self.docker(&["cp", &src, &tmp.display().to_string()])
            .await?;
        let dir = tmp.join(format!("{topic}-{partition}"));
        let what = super::flip_bytes_in_newest_segment(&dir, seed)?;
        // `docker cp -a` keeps ownership: the files must belong to the image's user.
        chown_tree(&dir, 65532)?;
        let dst = format!("{c}:/var/lib/spate/data/logs/");
        self.docker(&["cp", "-a", &dir.display().to_string(), &dst])
            .await?;
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(what)
    }

    /// The last lines of a node's log.
    pub async fn log_tail(&self, id: u32, lines: usize) -> String {
        let Ok(c) = self.container(id).await else {
            return String::new();
        };
        let out = Command::new("docker")
            .args(["logs", "--tail", &lines.to_string(), &c])
            .output()
            .await;
        match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(_) => String::new(),
        }
    }

    /// The image the cluster runs.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// `down -v`: containers, network and volumes.
    pub async fn teardown(self) {
        if let Err(e) = self.compose(&["down", "-v", "-t", "5"]).await {
            tracing::warn!(error = %e, "compose down failed");
        }
    }
}
