//! The commands `gossipnet up` takes, typed or from a script, parsed apart
//! from carrying them out so that every wording is checked by unit tests.

use std::{path::PathBuf, time::Duration};

/// The text `help` prints.
pub const HELP: &str = "\
commands:
  add [k]                    start k more peers (default 1)
  kill <node>                SIGKILL the node: its port, or its name (peer-2)
  stop <node>                SIGTERM the node (a clean shutdown)
  pause <node>               SIGSTOP the node
  resume <node>              SIGCONT the node
  send <node> <text>         the peer gossips the text
  list                       every node: role, port, status, degree, messages seen
  topology                   the live overlay, peer by peer
  topology --dot FILE        ... written as a Graphviz graph
  topology --json FILE       ... written as JSON
  stats                      delivery ratio, messages, suspicions, removals
  sleep <duration>           take the next command after e.g. 2s (for scripts)
  help                       this list
  exit                       stop every node and quit";

#[derive(Debug, Clone, PartialEq)]
pub enum ManagerCommand {
    Add(usize),
    Kill(NodeRef),
    Stop(NodeRef),
    Pause(NodeRef),
    Resume(NodeRef),
    Send(NodeRef, String),
    List,
    Topology(Option<TopologyFile>),
    Stats,
    Sleep(Duration),
    Help,
    Exit,
}

/// A node as a command names it: by port, or by the name `list` shows
/// (a script written before the run cannot know the ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    Port(u16),
    Name(String),
}

/// Where `topology` writes, and in which form.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologyFile {
    Dot(PathBuf),
    Json(PathBuf),
}

/// One command line; `None` for a blank line or a `#` comment. The error
/// is one line that says what to type instead.
pub fn parse_command(line: &str) -> Result<Option<ManagerCommand>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let args: Vec<&str> = rest.split_whitespace().collect();
    let no_args = |command: ManagerCommand| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(format!("`{word}` takes no arguments; got `{rest}`"))
        }
    };
    let command = match word {
        "add" => match args.as_slice() {
            [] => ManagerCommand::Add(1),
            [k] => match k.parse::<usize>() {
                Ok(k) if k > 0 => ManagerCommand::Add(k),
                _ => return Err(format!("`add {k}`: k must be a positive number")),
            },
            _ => return Err(format!("`add` takes one number at most; got `{rest}`")),
        },
        "kill" => ManagerCommand::Kill(one_node(word, &args)?),
        "stop" => ManagerCommand::Stop(one_node(word, &args)?),
        "pause" => ManagerCommand::Pause(one_node(word, &args)?),
        "resume" => ManagerCommand::Resume(one_node(word, &args)?),
        "send" => {
            let (node, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let node = one_node(word, &[node])?;
            let text = text.trim();
            if text.is_empty() {
                return Err("`send` needs text after the node: `send <port> <text>`".into());
            }
            ManagerCommand::Send(node, text.to_string())
        }
        "list" => no_args(ManagerCommand::List)?,
        "topology" => match args.as_slice() {
            [] => ManagerCommand::Topology(None),
            ["--dot", file] => ManagerCommand::Topology(Some(TopologyFile::Dot(file.into()))),
            ["--json", file] => ManagerCommand::Topology(Some(TopologyFile::Json(file.into()))),
            _ => {
                return Err(format!(
                    "`topology {rest}`: write `topology`, `topology --dot FILE` or `topology --json FILE`"
                ))
            }
        },
        "stats" => no_args(ManagerCommand::Stats)?,
        "sleep" => match args.as_slice() {
            [d] => ManagerCommand::Sleep(crate::config::parse_duration(d)?),
            _ => return Err("`sleep` takes one duration, e.g. `sleep 2s`".into()),
        },
        "help" | "?" => no_args(ManagerCommand::Help)?,
        "exit" | "quit" => no_args(ManagerCommand::Exit)?,
        _ => return Err(format!("unknown command `{word}`; type `help` for the list")),
    };
    Ok(Some(command))
}

/// A port if the word is all digits, else a name.
fn one_node(word: &str, args: &[&str]) -> Result<NodeRef, String> {
    match args {
        [node] if !node.is_empty() && node.bytes().all(|b| b.is_ascii_digit()) => node
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(NodeRef::Port)
            .ok_or_else(|| format!("`{node}` is not a port number; `list` shows the ports")),
        [node] if !node.is_empty() => Ok(NodeRef::Name(node.to_string())),
        _ => Err(format!(
            "`{word}` takes one node, e.g. `{word} 6001` or `{word} peer-2`; `list` shows them"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> ManagerCommand {
        parse_command(line).unwrap().unwrap()
    }

    fn err(line: &str) -> String {
        parse_command(line).unwrap_err()
    }

    #[test]
    fn every_command_parses() {
        assert_eq!(ok("add"), ManagerCommand::Add(1));
        assert_eq!(ok("  add 3 "), ManagerCommand::Add(3));
        let port = NodeRef::Port(6001);
        assert_eq!(ok("kill 6001"), ManagerCommand::Kill(port.clone()));
        assert_eq!(ok("stop 6001"), ManagerCommand::Stop(port.clone()));
        assert_eq!(ok("pause 6001"), ManagerCommand::Pause(port.clone()));
        assert_eq!(
            ok("resume peer-2"),
            ManagerCommand::Resume(NodeRef::Name("peer-2".into()))
        );
        assert_eq!(
            ok("send 6001   hello,  world "),
            ManagerCommand::Send(port, "hello,  world".into())
        );
        assert_eq!(ok("list"), ManagerCommand::List);
        assert_eq!(ok("topology"), ManagerCommand::Topology(None));
        assert_eq!(
            ok("topology --dot net.dot"),
            ManagerCommand::Topology(Some(TopologyFile::Dot("net.dot".into())))
        );
        assert_eq!(
            ok("topology --json net.json"),
            ManagerCommand::Topology(Some(TopologyFile::Json("net.json".into())))
        );
        assert_eq!(ok("stats"), ManagerCommand::Stats);
        assert_eq!(
            ok("sleep 1.5s"),
            ManagerCommand::Sleep(Duration::from_millis(1500))
        );
        assert_eq!(ok("help"), ManagerCommand::Help);
        assert_eq!(ok("exit"), ManagerCommand::Exit);
        assert_eq!(ok("quit"), ManagerCommand::Exit);
    }

    #[test]
    fn blank_lines_and_comments_are_no_commands() {
        assert_eq!(parse_command("   "), Ok(None));
        assert_eq!(parse_command("# kill the hub next"), Ok(None));
    }

    #[test]
    fn mistakes_get_one_line_that_says_what_to_type() {
        assert!(err("frobnicate").contains("unknown command `frobnicate`"));
        assert!(err("add 0").contains("positive number"));
        assert!(err("add x").contains("positive number"));
        assert!(err("kill").contains("`kill 6001` or `kill peer-2`"));
        assert!(err("kill 70000").contains("`70000` is not a port number"));
        assert!(err("pause 1 2").contains("takes one node"));
        assert!(err("send 6001").contains("needs text"));
        assert!(err("send 0 hi").contains("`0` is not a port number"));
        assert!(err("topology --png a.png").contains("--dot FILE"));
        assert!(err("list all").contains("takes no arguments"));
        assert!(err("sleep soon").contains("not a duration"));
        for line in ["frobnicate", "add 0", "kill", "send 6001", "topology x"] {
            assert!(!err(line).contains('\n'), "{line}: one line");
        }
    }
}
