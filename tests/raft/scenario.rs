//! Script-style tests: a scenario file is a list of `> command` lines, each followed by the
//! output it must produce (every message delivered, or the state asked for). Lines starting
//! with `#` are comments. `SHOAL_REWRITE=1` rewrites the expected output in place.

use super::harness::{render, render_entry, Cluster};
use shoal::raft::{ConfChange, NodeId};
use std::fmt::Write;
use std::path::Path;

struct Block {
    comments: Vec<String>,
    command: String,
    expected: Vec<String>,
}

fn parse(text: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut comments = Vec::new();
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("> ") {
            blocks.push(Block {
                comments: std::mem::take(&mut comments),
                command: cmd.trim().into(),
                expected: vec![],
            });
        } else if line.starts_with('#') || line.trim().is_empty() {
            comments.push(line.to_string());
        } else if let Some(b) = blocks.last_mut() {
            b.expected.push(line.to_string());
        }
    }
    blocks
}

/// Run one scenario file; `Err` shows the first difference.
pub fn run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let blocks = parse(&text);
    let mut cluster: Option<Cluster> = None;
    let mut rewritten = String::new();
    let mut first_error = None;
    for b in &blocks {
        let output = execute(&mut cluster, &b.command)
            .map_err(|e| format!("{}: `{}`: {e}", path.display(), b.command))?;
        let got: Vec<String> = output.lines().map(str::to_string).collect();
        for c in &b.comments {
            let _ = writeln!(rewritten, "{c}");
        }
        let _ = writeln!(rewritten, "> {}", b.command);
        for l in &got {
            let _ = writeln!(rewritten, "{l}");
        }
        if got != b.expected && first_error.is_none() {
            first_error = Some(format!(
                "{}: `{}`\n--- expected\n{}\n--- got\n{}",
                path.display(),
                b.command,
                b.expected.join("\n"),
                got.join("\n")
            ));
        }
    }
    if std::env::var_os("SHOAL_REWRITE").is_some() {
        std::fs::write(path, rewritten).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    first_error.map_or(Ok(()), Err)
}

fn id(arg: Option<&str>) -> Result<NodeId, String> {
    arg.ok_or("missing node id")?
        .parse()
        .map_err(|e| format!("bad node id: {e}"))
}

fn execute(cluster: &mut Option<Cluster>, command: &str) -> Result<String, String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let (verb, args) = words.split_first().ok_or("empty command")?;
    if *verb == "cluster" {
        let n = id(args.first().copied())?;
        let pre_vote = !args.contains(&"prevote=off");
        let check_quorum = !args.contains(&"checkquorum=off");
        *cluster = Some(Cluster::with(n, None, |cfg| {
            cfg.pre_vote = pre_vote;
            cfg.check_quorum = check_quorum;
        }));
        return Ok(String::new());
    }
    let c = cluster.as_mut().ok_or("no cluster yet")?;
    let arg = |i: usize| args.get(i).copied();
    let mut out = String::new();
    match *verb {
        "campaign" => {
            let n = id(arg(0))?;
            c.node_mut(n).campaign_now();
            c.flush(n);
        }
        "tick" => {
            let n = id(arg(0))?;
            let times = arg(1)
                .map_or(Ok(1), str::parse)
                .map_err(|e| format!("bad count: {e}"))?;
            c.tick(n, times);
        }
        "stabilize" => c.stabilize(),
        "deliver" => c.deliver_queued(),
        "drop" => {
            for m in c.queue.drain(..) {
                let _ = writeln!(out, "{} (dropped)", render(&m));
            }
        }
        "propose" => {
            let n = id(arg(0))?;
            let result = c.propose(n, arg(1).unwrap_or(""));
            let _ = writeln!(out, "{result:?}");
        }
        "change" => {
            let n = id(arg(0))?;
            let target = id(arg(2))?;
            let change = match arg(1) {
                Some("add-learner") => ConfChange::AddLearner(target),
                Some("add-voter") => ConfChange::AddVoter(target),
                Some("remove") => ConfChange::Remove(target),
                other => return Err(format!("unknown change {other:?}")),
            };
            let result = c.change(n, change);
            let _ = writeln!(out, "{result:?}");
        }
        "read" => {
            let n = id(arg(0))?;
            let result = c.node_mut(n).read_index(arg(1).unwrap_or("").as_bytes().to_vec());
            c.flush(n);
            let _ = writeln!(out, "{result:?}");
        }
        "transfer" => {
            let n = id(arg(0))?;
            let result = c.node_mut(n).transfer_leader(id(arg(1))?);
            c.flush(n);
            let _ = writeln!(out, "{result:?}");
        }
        "isolate" => c.isolate(id(arg(0))?),
        "cut" => {
            c.blocked.insert((id(arg(0))?, id(arg(1))?));
        }
        "heal" => c.heal(),
        "crash" => c.crash(id(arg(0))?),
        "restart" => c.restart(id(arg(0))?),
        "add-node" => c.add_empty(id(arg(0))?),
        "compact" => {
            let index = c.compact(id(arg(0))?);
            let _ = writeln!(out, "compacted to {index}");
        }
        "status" => {
            for n in c.nodes.keys() {
                let _ = writeln!(out, "{}", c.status_line(*n));
            }
        }
        "log" => {
            let n = id(arg(0))?;
            for e in c.node(n).entries_from(0) {
                let _ = writeln!(out, "{}", render_entry(e));
            }
        }
        "reads" => {
            let n = id(arg(0))?;
            for (ctx, index) in c.read_states.get(&n).cloned().unwrap_or_default() {
                let _ = writeln!(out, "read {} at index {index}", String::from_utf8_lossy(&ctx));
            }
        }
        other => return Err(format!("unknown command {other}")),
    }
    Ok(c.take_log() + &out)
}
