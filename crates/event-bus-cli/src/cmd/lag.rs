//! `event-bus lag`: how far consumer groups are behind, read from the
//! broker (Kafka committed offsets against the high watermarks, Redis
//! `XINFO GROUPS`, the SQLite log, NATS consumer info, RabbitMQ queue
//! depth), as a table for people or JSON for scripts.

use clap::{Args, ValueEnum};
use openedx_events::bus::transport::GroupLag;

use crate::error::Result;
use crate::settings::{transport, GlobalArgs};

/// Arguments of `lag`.
#[derive(Debug, Args)]
pub struct LagArgs {
    /// The topic, without the prefix.
    #[arg(short, long)]
    pub topic: String,
    /// Only this consumer group (default: every group the broker knows on
    /// the topic).
    #[arg(short, long, visible_alias = "group_id", alias = "group-id")]
    pub group: Option<String>,
    /// A table, or one JSON array of {topic, group, partition, lag, pending}.
    #[arg(long, value_enum, default_value_t = LagOutput::Text)]
    pub output: LagOutput,
}

/// How `lag` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LagOutput {
    /// A table with a total per group.
    Text,
    /// One JSON array.
    Json,
}

/// Print the lag of the topic's groups.
pub async fn run(global: &GlobalArgs, args: LagArgs) -> Result<()> {
    let bus = global.bus().await?;
    let transport = transport(&bus, "read the consumer lag")?;
    let topic = bus.producer().full_topic(&args.topic);
    let mut rows = transport.lag(&topic, args.group.as_deref()).await?;
    rows.sort_by(|a, b| (&a.group, partition_order(&a.partition)).cmp(&(&b.group, partition_order(&b.partition))));
    match args.output {
        LagOutput::Json => crate::io::println(&serde_json::to_string(&rows)?),
        LagOutput::Text => crate::io::println(&table(&topic, args.group.as_deref(), &rows)),
    }
}

/// Numeric partitions in numeric order.
fn partition_order(p: &str) -> (u64, &str) {
    (p.parse().unwrap_or(u64::MAX), p)
}

fn table(topic: &str, group: Option<&str>, rows: &[GroupLag]) -> String {
    if rows.is_empty() {
        return match group {
            Some(g) => format!("no consumer group {g:?} on {topic}"),
            None => format!("no consumer groups on {topic}"),
        };
    }
    let pending = |p: Option<u64>| p.map_or_else(|| "-".to_string(), |n| n.to_string());
    let mut lines = vec![vec![
        "TOPIC".to_string(),
        "GROUP".into(),
        "PARTITION".into(),
        "LAG".into(),
        "PENDING".into(),
    ]];
    for r in rows {
        lines.push(vec![
            r.topic.clone(),
            r.group.clone(),
            r.partition.clone(),
            r.lag.to_string(),
            pending(r.pending),
        ]);
    }
    let mut groups: Vec<&str> = rows.iter().map(|r| r.group.as_str()).collect();
    groups.dedup();
    for g in groups {
        let of_group = rows.iter().filter(|r| r.group == g);
        let partitions = of_group.clone().count();
        if partitions > 1 {
            let lag: u64 = of_group.clone().map(|r| r.lag).sum();
            let pend = of_group.map(|r| r.pending).sum::<Option<u64>>();
            lines.push(vec![
                topic.to_string(),
                g.to_string(),
                "(all)".into(),
                lag.to_string(),
                pending(pend),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    lines
        .iter()
        .map(|l| {
            let cells: Vec<String> = l
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i >= 3 {
                        format!("{c:>w$}", w = widths[i])
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
