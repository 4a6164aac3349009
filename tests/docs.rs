//! The documents are interfaces too: their examples must be what the code
//! accepts, and every message and event must be in them.

use std::path::Path;

use gossipnet::{
    config,
    output::EventRecord,
    proto::{
        evidence::{report_bytes, statement_bytes},
        message::{Message, PublicKey, Verdict},
    },
};

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

/// The example peers' public keys, as docs/PROTOCOL.md gives them.
const EXAMPLE_KEYS: [(&str, &str); 2] = [
    (
        "127.0.0.1:6002",
        "14db7113d73a27dfc2fd77224ab7d8f22e719251f663fc2d5229917842692175",
    ),
    (
        "127.0.0.1:6003",
        "11d53782f0f6df3a567130ae88d6acf79c25f75ba2060e194fd759f5395e00ac",
    ),
];

#[test]
fn the_signatures_in_protocol_md_examples_verify() {
    let doc = read("docs/PROTOCOL.md");
    let key_of = |addr: std::net::SocketAddr| -> PublicKey {
        let (_, key) = EXAMPLE_KEYS
            .iter()
            .find(|(a, _)| a.parse() == Ok(addr))
            .unwrap_or_else(|| panic!("no example key for {addr}"));
        assert!(
            doc.contains(key),
            "PROTOCOL.md does not give the key of {addr}"
        );
        key.parse().unwrap()
    };
    let mut checked = 0;
    for line in json_lines_with(&doc, "\"type\"") {
        match Message::from_json(line.as_bytes()).unwrap() {
            Message::SuspectResponse {
                peer,
                verdict: Verdict::Unresponsive,
                incarnation: Some(incarnation),
                statement: Some(statement),
            } => {
                key_of(statement.addr)
                    .verify_statement(peer, incarnation, &statement)
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
                checked += 1;
            }
            report @ Message::DeadReport { .. } => {
                // The reporter is the example's sender, 127.0.0.1:6002.
                let reporter = "127.0.0.1:6002".parse().unwrap();
                let (content, signature) = report.report_content(reporter).unwrap();
                for statement in content.confirmers {
                    key_of(statement.addr)
                        .verify_statement(content.peer, content.incarnation, statement)
                        .unwrap_or_else(|e| panic!("{line}: {e}"));
                }
                key_of(reporter)
                    .verify(&report_bytes(&content), signature)
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
                checked += 1;
            }
            _ => {}
        }
    }
    assert_eq!(checked, 3, "the signed examples in PROTOCOL.md");
}

#[test]
fn the_canonical_bytes_in_protocol_md_are_what_a_confirmer_signs() {
    let doc = read("docs/PROTOCOL.md");
    // The block that starts with the statement's tag length: hex, then
    // after two or more spaces what it encodes.
    let start = doc
        .find("```\n00000019 ")
        .expect("the statement bytes example")
        + 4;
    let block = &doc[start..start + doc[start..].find("```").unwrap()];
    let shown: String = block
        .lines()
        .map(|l| l.split("  ").next().unwrap().replace(' ', ""))
        .collect();
    let bytes = statement_bytes(
        "127.0.0.1:6001".parse().unwrap(),
        1795276980417349,
        "127.0.0.1:6003".parse().unwrap(),
        1795277301240007,
    );
    assert_eq!(shown, hex::encode(bytes));
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

#[test]
fn the_hello_proof_example_in_protocol_md_verifies() {
    let doc = read("docs/PROTOCOL.md");
    let (mut challenge, mut proof) = (None, None);
    for line in json_lines_with(&doc, "\"type\"") {
        match Message::from_json(line.as_bytes()).unwrap() {
            Message::Hello {
                challenge: Some(c),
                listen,
                ..
            } => challenge = Some((c, listen)),
            Message::HelloProof { key, signature } => proof = Some((key, signature)),
            _ => {}
        }
    }
    let (challenge, acceptor) = challenge.expect("a HELLO with a challenge");
    let dialler = "127.0.0.1:33851".parse().unwrap();
    // The example's key is made from 32 bytes of 0x11.
    let identity = gossipnet::proto::evidence::Identity::from_secret([0x11; 32]);
    let expected = Message::HelloProof {
        key: identity.public_key(),
        signature: identity.prove_hello(dialler, acceptor, challenge),
    };
    let (key, signature) = proof.unwrap_or_else(|| {
        panic!(
            "no HELLO_PROOF example; it would be {}",
            String::from_utf8(expected.to_json()).unwrap()
        )
    });
    assert_eq!(key, identity.public_key(), "the example's key");
    key.verify_hello(dialler, acceptor, challenge, &signature)
        .unwrap_or_else(|e| {
            panic!(
                "the example does not verify ({e}); it would be {}",
                String::from_utf8(expected.to_json()).unwrap()
            )
        });
}

#[test]
fn the_gossip_example_in_protocol_md_verifies() {
    let doc = read("docs/PROTOCOL.md");
    // The example's origin key is made from 32 bytes of 0x22.
    let identity = gossipnet::proto::evidence::Identity::from_secret([0x22; 32]);
    let (origin, text) = (
        "127.0.0.1:6001".parse().unwrap(),
        "1740466800.123456:127.0.0.1:3",
    );
    let expected = Message::gossip_signed_by(&identity, origin, text, 2);
    let example = json_lines_with(&doc, "\"type\":\"GOSSIP\"")
        .into_iter()
        .find_map(|line| Message::from_json(line.as_bytes()).ok());
    assert_eq!(
        example.as_ref(),
        Some(&expected),
        "the GOSSIP example would be {}",
        String::from_utf8(expected.to_json()).unwrap()
    );
    let Some(Message::Gossip {
        origin,
        key,
        msg,
        signature,
        ..
    }) = example
    else {
        unreachable!("compared above")
    };
    key.verify_gossip(origin, &msg, &signature).unwrap();
}

#[test]
fn the_leave_example_in_protocol_md_verifies() {
    let doc = read("docs/PROTOCOL.md");
    // The example's peer key is made from 32 bytes of 0x22, as GOSSIP's.
    let identity = gossipnet::proto::evidence::Identity::from_secret([0x22; 32]);
    let peer = "127.0.0.1:6001".parse().unwrap();
    let expected = Message::leave_signed_by(&identity, peer, 1795276980417349);
    let example = json_lines_with(&doc, "\"type\":\"LEAVE\"")
        .into_iter()
        .find_map(|line| Message::from_json(line.as_bytes()).ok());
    assert_eq!(
        example.as_ref(),
        Some(&expected),
        "the LEAVE example would be {}",
        String::from_utf8(expected.to_json()).unwrap()
    );
    let Some(Message::Leave {
        peer,
        incarnation,
        signature,
    }) = example
    else {
        unreachable!("compared above")
    };
    identity
        .public_key()
        .verify_leave(peer, incarnation, &signature)
        .unwrap();
}
