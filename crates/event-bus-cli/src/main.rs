//! `event-bus`: the Open edX event bus on the command line.
//!
//! Thin glue over `openedx-events`: list the catalog, print schemas, encode
//! and decode event data, produce and consume events through any compiled-in
//! backend, inspect and requeue dead letters, and demo or benchmark a bus.
//! Settings come from `--config FILE.toml`, the environment and flags, named
//! like the Django settings of the Python peers.

mod backends;
mod cmd;
mod error;
mod io;
mod logging;
mod settings;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{CliError, Result};
use crate::settings::GlobalArgs;

/// The Open edX event bus: catalog, codec, produce, consume, dead letters,
/// demo and benchmark.
#[derive(Debug, Parser)]
#[command(name = "event-bus", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the catalog event types (name, subdomain, whether they can travel on the bus).
    Events {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print the Avro schema of an event type, as generate_avro_schemas writes it.
    Schema {
        /// Print the canonical schema string (json.dumps(schema, sort_keys=True)).
        #[arg(long)]
        string: bool,
        /// The event type, e.g. org.openedx.learning.course.enrollment.created.v1.
        event_type: String,
    },
    /// Encode or decode event data (schemaless Avro).
    Codec {
        #[command(subcommand)]
        command: CodecCommand,
    },
    /// Consume events from a topic and print each one (like manage.py consume_events).
    Consume(cmd::consume::ConsumeArgs),
    /// Produce events of one type to a topic (like manage.py produce_event).
    Produce(cmd::produce::ProduceArgs),
    /// Show how far consumer groups are behind: per group and partition,
    /// the events not acknowledged yet, as the broker tells it.
    Lag(cmd::lag::LagArgs),
    /// Inspect and requeue dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Show catalog events flowing between two processes on a fresh embedded
    /// SQLite bus (needs no configuration; ignores --config, --backend and the
    /// environment).
    Demo(cmd::demo::DemoArgs),
    /// Measure produce and end-to-end rates and latency on the configured backend.
    Bench(cmd::bench::BenchArgs),
    /// The transactional outbox (PostgreSQL, MySQL): relay its rows to the
    /// configured backend, or create its tables.
    #[cfg(feature = "outbox")]
    Outbox {
        #[command(subcommand)]
        command: cmd::outbox::OutboxCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CodecCommand {
    /// Decode Avro bytes (hex) to the JSON data, keys sorted.
    Decode {
        /// The event type.
        #[arg(long)]
        event_type: String,
        /// The schemaless Avro body in hex.
        #[arg(long)]
        hex: String,
    },
    /// Encode JSON data to Avro bytes (lowercase hex).
    Encode {
        /// The event type.
        #[arg(long)]
        event_type: String,
        /// The data as JSON, or @FILE (@- for stdin).
        #[arg(long)]
        json: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List the dead letters of a topic, one per line.
    List {
        /// The topic (without prefix) whose dead letters to list.
        #[arg(short, long)]
        topic: String,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one dead letter: headers and data.
    Show {
        /// The topic (without prefix) whose dead letters to look in.
        #[arg(short, long)]
        topic: String,
        /// The dead letter's position, as `dlq list` prints it.
        position: String,
    },
    /// Send dead letters back to their original topic.
    Requeue {
        /// The topic (without prefix) whose dead letters to requeue.
        #[arg(short, long)]
        topic: String,
        /// The consumer group reading the dead-letter topic.
        #[arg(short, long, default_value = "event-bus-dlq-requeue")]
        group: String,
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// The consume output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One JSON object per event: {"metadata": ..., "data": ...}.
    Json,
    /// A short line per event.
    Text,
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!("error: internal error: {}{place}", payload.replace('\n', " "));
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) if e.is_quiet() => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {}", e.one_line());
            ExitCode::FAILURE
        }
        // The panic hook has printed the one-line message.
        Err(_) => ExitCode::FAILURE,
    }
}

/// Help and version go to stdout with exit 0; a usage error is one line on
/// stderr with exit 1.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            // The message is the first paragraph; usage and tips follow.
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .trim_start()
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("error: {message} (see --help)");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let default_level = match cli.command {
        Command::Consume(_) => "info",
        #[cfg(feature = "outbox")]
        Command::Outbox { .. } => "info",
        _ => "warn",
    };
    logging::init(default_level, cli.global.log_format()?)?;
    match cli.command {
        Command::Events { json } => cmd::events::run(json),
        Command::Schema { string, event_type } => cmd::schema::run(&event_type, string),
        Command::Codec { command } => match command {
            CodecCommand::Decode { event_type, hex } => cmd::codec::decode(&event_type, &hex),
            CodecCommand::Encode { event_type, json } => cmd::codec::encode(&event_type, &json),
        },
        command => runtime()?.block_on(run_async(cli.global, command)),
    }
}

async fn run_async(global: GlobalArgs, command: Command) -> Result<()> {
    match command {
        Command::Consume(args) => cmd::consume::run(&global, args).await,
        Command::Produce(args) => cmd::produce::run(&global, args).await,
        Command::Lag(args) => cmd::lag::run(&global, args).await,
        Command::Dlq { command } => match command {
            DlqCommand::List { topic, limit } => cmd::dlq::list(&global, &topic, limit).await,
            DlqCommand::Show { topic, position } => cmd::dlq::show(&global, &topic, &position).await,
            DlqCommand::Requeue { topic, group, limit } => cmd::dlq::requeue(&global, &topic, &group, limit).await,
        },
        Command::Demo(args) => cmd::demo::run(args).await,
        Command::Bench(args) => cmd::bench::run(&global, args).await,
        #[cfg(feature = "outbox")]
        Command::Outbox { command } => cmd::outbox::run(&global, command).await,
        Command::Events { .. } | Command::Schema { .. } | Command::Codec { .. } => {
            Err(CliError::new("internal error: synchronous command on the async path"))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))
}
