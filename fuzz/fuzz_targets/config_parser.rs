//! `config::parse` on arbitrary UTF-8 text, read as each of the three formats
//! (line format, TOML, YAML). Never panics; every error can be displayed; and
//! a config that loads keeps its promises (at least 2 seeds, no duplicates,
//! no port 0) and loads the same again from the TOML it renders to.
#![no_main]

use std::path::Path;

use gossipnet::config::{self, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for name in ["config.txt", "config.toml", "config.yml"] {
        match config::parse(Path::new(name), text) {
            Ok(config) => check(&config),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});

fn check(config: &Config) {
    let seeds = &config.seeds;
    assert!(seeds.len() >= 2, "{seeds:?}: fewer than 2 seeds");
    for (i, a) in seeds.iter().enumerate() {
        assert_ne!(a.port(), 0, "{a}: port 0");
        assert!(!seeds[..i].contains(a), "{a} listed twice");
    }
    let quoted: Vec<String> = seeds.iter().map(|a| format!("\"{a}\"")).collect();
    let rendered = format!(
        "seeds = [{}]\n[peer]\n{}",
        quoted.join(", "),
        config.peer.to_toml()
    );
    let again = config::parse(Path::new("again.toml"), &rendered)
        .unwrap_or_else(|e| panic!("rendered config does not load: {e}\n{rendered}"));
    assert_eq!(
        &again.seeds, seeds,
        "seeds changed by rendering\n{rendered}"
    );
    assert_eq!(
        again.peer, config.peer,
        "peer settings changed by rendering\n{rendered}"
    );
}
