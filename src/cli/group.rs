//! `spate group`: list, describe (members, committed offsets, log end, lag), reset the
//! committed offsets of an empty group, delete groups — like `kafka-consumer-groups`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Context};
use spate_client::admin::{GroupDescription, OffsetSpec};
use spate_client::{Admin, TopicPartition};

use super::{init_logging, Conn};

/// Flags of `spate group`.
#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    #[command(subcommand)]
    cmd: GroupCmd,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Subcommand, Debug)]
enum GroupCmd {
    /// List the groups of every broker.
    List,
    /// State and members of a group, and per partition its committed offset, log end and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets (dry run unless --execute; the group must be empty).
    #[command(group(clap::ArgGroup::new("target").required(true)))]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions to reset.
        #[arg(long)]
        topic: String,
        /// To the log start of each partition.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To the log end of each partition.
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To this offset (clamped to each partition's log start and end).
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// Commit the new offsets; without it only the plan is printed.
        #[arg(long)]
        execute: bool,
    },
    /// Delete groups (each must have no members).
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

/// Where `reset-offsets` moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetTarget {
    Earliest,
    Latest,
    Offset(i64),
}

/// Runs `spate group ...`.
pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    init_logging();
    let admin = Admin::connect(args.conn.client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {}", args.conn.bootstrap))?;
    match args.cmd {
        GroupCmd::List => list(&admin).await,
        GroupCmd::Describe { group } => describe(&admin, &group).await,
        GroupCmd::ResetOffsets {
            group,
            topic,
            to_earliest: _,
            to_latest,
            to_offset,
            execute,
        } => {
            let target = match (to_latest, to_offset) {
                (_, Some(o)) => ResetTarget::Offset(o),
                (true, None) => ResetTarget::Latest,
                (false, None) => ResetTarget::Earliest,
            };
            reset_offsets(&admin, &group, &topic, target, execute).await
        }
        GroupCmd::Delete { groups } => delete(&admin, &groups).await,
    }
}

async fn list(admin: &Admin) -> anyhow::Result<()> {
    let (groups, failures) = admin
        .list_groups()
        .await
        .map_err(|e| anyhow!("list groups: {e}"))?;
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.group_id.clone(),
                or_dash(&g.protocol_type),
                g.state.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(&["GROUP", "PROTOCOL-TYPE", "STATE"], &rows)
    );
    for e in &failures {
        eprintln!("warning: {e}");
    }
    if !failures.is_empty() && groups.is_empty() {
        bail!("no broker answered ListGroups");
    }
    Ok(())
}

async fn describe(admin: &Admin, group: &str) -> anyhow::Result<()> {
    let desc = admin.describe_group(group).await?;
    let committed = admin.committed_offsets(group, None).await?;
    if desc.state == "Dead" && committed.is_empty() {
        bail!("group '{group}' does not exist");
    }
    println!(
        "Group '{group}': state {}, protocol {}/{}, coordinator {}, {} member(s)",
        desc.state,
        or_dash(&desc.protocol_type),
        or_dash(&desc.protocol),
        desc.coordinator,
        desc.members.len()
    );
    if !desc.members.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = desc
            .members
            .iter()
            .map(|m| {
                vec![
                    m.member_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    fmt_partitions(&m.assignment),
                ]
            })
            .collect();
        print!(
            "{}",
            render_table(&["CONSUMER-ID", "CLIENT-ID", "HOST", "PARTITIONS"], &rows)
        );
    }
    let partitions: BTreeSet<TopicPartition> = committed
        .keys()
        .cloned()
        .chain(
            desc.members
                .iter()
                .flat_map(|m| m.assignment.iter().cloned()),
        )
        .collect();
    if partitions.is_empty() {
        println!("\nNo committed offsets.");
        return Ok(());
    }
    let specs: Vec<(TopicPartition, OffsetSpec)> = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    let mut log_end = BTreeMap::new();
    for (tp, r) in admin.list_offsets(&specs).await? {
        match r {
            Ok(o) => {
                log_end.insert(tp, o.offset);
            }
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    println!();
    print!(
        "{}",
        render_table(
            &[
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID"
            ],
            &lag_rows(&desc, &committed, &log_end),
        )
    );
    Ok(())
}

/// One row per partition that is committed or assigned: offsets, lag, owner.
fn lag_rows(
    desc: &GroupDescription,
    committed: &BTreeMap<TopicPartition, i64>,
    log_end: &BTreeMap<TopicPartition, i64>,
) -> Vec<Vec<String>> {
    let owner: BTreeMap<&TopicPartition, &str> = desc
        .members
        .iter()
        .flat_map(|m| {
            m.assignment
                .iter()
                .map(move |tp| (tp, m.member_id.as_str()))
        })
        .collect();
    let all: BTreeSet<&TopicPartition> = committed.keys().chain(owner.keys().copied()).collect();
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    all.into_iter()
        .map(|tp| {
            let current = committed.get(tp).copied();
            let end = log_end.get(tp).copied();
            let lag = match (current, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            vec![
                tp.topic.to_string(),
                tp.partition.to_string(),
                opt(current),
                opt(end),
                opt(lag),
                owner.get(tp).map_or("-", |m| m).to_string(),
            ]
        })
        .collect()
}

async fn reset_offsets(
    admin: &Admin,
    group: &str,
    topic: &str,
    target: ResetTarget,
    execute: bool,
) -> anyhow::Result<()> {
    let count = admin
        .cluster()
        .partition_count(topic)
        .await
        .map_err(|e| anyhow!("reset offsets of group '{group}': {e}"))?;
    let tps: Vec<TopicPartition> = (0..count as i32)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    let committed = admin.committed_offsets(group, Some(&tps)).await?;
    let mut specs = Vec::with_capacity(tps.len() * 2);
    for tp in &tps {
        specs.push((tp.clone(), OffsetSpec::Earliest));
        specs.push((tp.clone(), OffsetSpec::Latest));
    }
    let listed = admin.list_offsets(&specs).await?;
    let mut bounds: BTreeMap<TopicPartition, (i64, i64)> = BTreeMap::new();
    for ((tp, r), (_, spec)) in listed.into_iter().zip(&specs) {
        let o = r
            .map_err(|e| anyhow!("reset offsets of group '{group}': {e}"))?
            .offset;
        let b = bounds.entry(tp).or_insert((0, 0));
        match spec {
            OffsetSpec::Earliest => b.0 = o,
            _ => b.1 = o,
        }
    }
    let plan: Vec<(TopicPartition, i64)> = bounds
        .iter()
        .map(|(tp, &(lo, hi))| (tp.clone(), reset_to(target, lo, hi)))
        .collect();
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(tp, new)| {
            vec![
                tp.topic.to_string(),
                tp.partition.to_string(),
                committed
                    .get(tp)
                    .map_or_else(|| "-".to_string(), |c| c.to_string()),
                new.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
            &rows
        )
    );
    if !execute {
        println!("Dry run: nothing committed; add --execute to apply.");
        return Ok(());
    }
    // The coordinator checks emptiness too; asking first gives a clearer message.
    let desc = admin.describe_group(group).await?;
    if !desc.members.is_empty() {
        bail!(
            "group '{group}' is {} with {} member(s); stop its consumers before resetting offsets",
            desc.state,
            desc.members.len()
        );
    }
    let mut failed = 0;
    for (tp, r) in admin.alter_committed_offsets(group, &plan).await? {
        if let Err(e) = r {
            eprintln!("{tp}: {e}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!(
            "group '{group}': {failed} of {} partition(s) not reset",
            plan.len()
        );
    }
    println!(
        "Reset {} partition(s) of '{topic}' for group '{group}'.",
        plan.len()
    );
    Ok(())
}

/// The new offset of a partition whose log spans `[lo, hi)`.
fn reset_to(target: ResetTarget, lo: i64, hi: i64) -> i64 {
    match target {
        ResetTarget::Earliest => lo,
        ResetTarget::Latest => hi,
        // As kafka-consumer-groups does: an offset outside the log snaps to its nearest end.
        ResetTarget::Offset(o) => o.clamp(lo, hi.max(lo)),
    }
}

async fn delete(admin: &Admin, groups: &[String]) -> anyhow::Result<()> {
    let mut failed = 0;
    for (group, r) in admin.delete_groups(groups).await {
        match r {
            Ok(()) => println!("Deleted group '{group}'."),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} group(s) not deleted", groups.len());
    }
    Ok(())
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// `t-0,t-1,u-3` in partition order, or `-`.
fn fmt_partitions(tps: &[TopicPartition]) -> String {
    if tps.is_empty() {
        return "-".into();
    }
    tps.iter()
        .map(|tp| tp.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Left-aligned columns separated by two spaces, header first.
fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied(), &mut out);
    for row in rows {
        line(&mut row.iter().map(String::as_str), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_client::admin::MemberDescription;
    use spate_client::NodeId;

    #[test]
    fn lag_joins_committed_log_end_and_owner() {
        let desc = GroupDescription {
            group_id: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![MemberDescription {
                member_id: "m1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                assignment: vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)],
            }],
            coordinator: NodeId(1),
        };
        let committed = BTreeMap::from([
            (TopicPartition::new("t", 0), 5),
            (TopicPartition::new("u", 0), 9),
        ]);
        let log_end = BTreeMap::from([
            (TopicPartition::new("t", 0), 12),
            (TopicPartition::new("t", 1), 3),
            (TopicPartition::new("u", 0), 9),
        ]);
        let rows = lag_rows(&desc, &committed, &log_end);
        assert_eq!(rows[0], ["t", "0", "5", "12", "7", "m1"]);
        assert_eq!(rows[1], ["t", "1", "-", "3", "-", "m1"]);
        assert_eq!(rows[2], ["u", "0", "9", "9", "0", "-"]);
    }

    #[test]
    fn reset_targets_clamp_to_the_log() {
        assert_eq!(reset_to(ResetTarget::Earliest, 3, 10), 3);
        assert_eq!(reset_to(ResetTarget::Latest, 3, 10), 10);
        assert_eq!(reset_to(ResetTarget::Offset(7), 3, 10), 7);
        assert_eq!(reset_to(ResetTarget::Offset(1), 3, 10), 3);
        assert_eq!(reset_to(ResetTarget::Offset(99), 3, 10), 10);
    }

    #[test]
    fn table_aligns_columns() {
        let t = render_table(
            &["A", "LONGER"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
        assert_eq!(fmt_partitions(&[]), "-");
    }
}
