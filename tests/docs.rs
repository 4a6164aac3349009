//! The documents are interfaces too: their examples must be what the code
//! accepts, and every message and event must be in them.

use std::path::Path;

use gossipnet::{config, output::EventRecord, proto::message::Message};

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Contents of the fenced blocks tagged `lang`.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim() == open => current = Some(String::new()),
            Some(body) if line.trim() == "```" => {
                out.push(std::mem::take(body));
                current = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Lines of the json blocks that contain `key`.
fn json_lines_with(doc: &str, key: &str) -> Vec<String> {
    blocks(doc, "json")
        .iter()
        .flat_map(|b| b.lines())
        .filter(|l| l.contains(key))
        .map(str::to_string)
        .collect()
}

/// Variant names of `pub enum <name>` in a source file, in CamelCase.
fn variants(source: &str, name: &str) -> Vec<String> {
    let body = source
        .split(&format!("pub enum {name} {{"))
        .nth(1)
        .expect("enum present")
        .split("\n}")
        .next()
        .unwrap();
    body.lines()
        .filter_map(|line| {
            let word = line.strip_prefix("    ")?;
            let first = word.chars().next()?;
            first
                .is_ascii_uppercase()
                .then(|| word.split([' ', ',', '{']).next().unwrap().to_string())
        })
        .collect()
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[test]
fn every_message_example_in_protocol_md_decodes() {
    let doc = read("docs/PROTOCOL.md");
    let examples = json_lines_with(&doc, "\"type\"");
    assert!(!examples.is_empty());
    for line in &examples {
        let msg = Message::from_json(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
        // Exactly what the code sends: same fields, same order.
        let again = String::from_utf8(msg.to_json()).unwrap();
        assert_eq!(
            line.trim(),
            again,
            "PROTOCOL.md example differs from the code's output"
        );
    }
    let source = read("src/proto/message.rs");
    let names = variants(&source, "Message");
    assert!(names.len() >= 7, "{names:?}");
    for name in names {
        let tag = format!("\"type\":\"{}\"", snake(&name).to_uppercase());
        assert!(
            examples.iter().any(|l| l.contains(&tag)),
            "PROTOCOL.md has no example of {tag}"
        );
    }
}

#[test]
fn every_event_example_in_events_md_parses_and_every_event_is_documented() {
    let doc = read("docs/EVENTS.md");
    let examples = json_lines_with(&doc, "\"event\"");
    for line in &examples {
        serde_json::from_str::<EventRecord>(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let names = variants(&read("src/proto/event.rs"), "Event");
    assert!(names.len() >= 17, "{names:?}");
    for name in names {
        let tag = format!("\"event\":\"{}\"", snake(&name));
        assert!(
            examples.iter().any(|l| l.contains(&tag)),
            "EVENTS.md has no example of {tag}"
        );
        assert!(
            doc.lines()
                .any(|l| l.trim() == format!("### {}", snake(&name))),
            "EVENTS.md has no section for {}",
            snake(&name)
        );
    }
}

#[test]
fn readme_config_examples_parse() {
    let readme = read("README.md");
    let tomls = blocks(&readme, "toml");
    let yamls = blocks(&readme, "yaml");
    assert!(!tomls.is_empty() && !yamls.is_empty());
    for text in tomls {
        config::parse(Path::new("config.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    }
    for text in yamls {
        config::parse(Path::new("config.yml"), &text).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(readme.contains("cargo run --release -- up"));
    assert!(readme.contains("cargo test"));
}
