//! `event-bus events`: the catalog.

use openedx_events::catalog;
use openedx_events::pyjson::{dumps, DumpOptions};
use serde_json::{json, Value as Json};

use crate::error::Result;
use crate::io::println;

/// List the catalog event types: one line each (name, subdomain, `bus` or
/// `no-bus`), or one JSON array with `--json`.
pub fn run(as_json: bool) -> Result<()> {
    let all = catalog::all();
    if as_json {
        let list: Vec<Json> = all
            .iter()
            .map(|t| {
                json!({
                    "name": t.name(),
                    "subdomain": t.subdomain(),
                    "bus_capable": t.is_bus_capable(),
                })
            })
            .collect();
        return println(&dumps(&Json::Array(list), DumpOptions::default()));
    }
    let width = all.iter().map(|t| t.name().len()).max().unwrap_or(0);
    let sub_width = all
        .iter()
        .map(|t| t.subdomain().unwrap_or("-").len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for t in all {
        let bus = if t.is_bus_capable() { "bus" } else { "no-bus" };
        let line = format!(
            "{:width$}  {:sub_width$}  {bus}",
            t.name(),
            t.subdomain().unwrap_or("-")
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    crate::io::write_stdout(&text, false)
}
